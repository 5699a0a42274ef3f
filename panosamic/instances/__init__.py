"""SAM's automatic mask generation on PanoSAMic's encoder neck, and refinement with its masks.

Map of the package (one panorama's path: :mod:`.pipeline` -> :mod:`.amg` ->
one of the two decoders -> :mod:`.merge`; :mod:`.refine` afterwards):

- :mod:`.config`: the settings (:class:`AMGConfig`, SAM's prompt-module sizes);
- :mod:`.prompt_modules`: SAM's prompt encoder and mask decoder;
- :mod:`.pipeline`: every modality and view of a batch, merged into one mask list per image;
- :mod:`.amg`: SAM's automatic mask generation on one embedding;
- :mod:`.exact_decoder`, :mod:`.factored_decoder`: SAM's mask decoder in SAM's
  operation order, or with the image-side attention factored (the default),
  on the pieces of :mod:`.mask_decoding`;
- :mod:`.masks`: mask sets and exact pixel counting;
- :mod:`.merge`: the merge across modalities and the merge of the two views;
- :mod:`.refine`: the majority vote of the semantic classes inside every mask;
- :mod:`.workspace`: reused buffers.
"""
