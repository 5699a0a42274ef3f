"""Segmenting panoramas from files: reading the inputs, running the model, writing pictures.

- :mod:`.inputs`: a panorama and its depth and normals files -> the model's input;
- :mod:`.segment`: a loaded model on one panorama -> labels and instance masks;
- :mod:`.pictures`: colour map, overlay, instance map, panel with legend, summary JSON.
"""
