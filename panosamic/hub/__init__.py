"""Where weight files come from and how they are read; nothing here builds a model.

- :mod:`.files`: reading ``.safetensors`` / ``.pth`` files and checking tensor layouts;
- :mod:`.sam`: Meta's official SAM files: names, checksums, cache, download;
- :mod:`.huggingface`: the Hugging Face Hub: download, upload, offline mode;
- :mod:`.locate`: a checkpoint named by a Hub id, a Hub-layout folder, a run or a file;
- :mod:`.catalog`: the published variants and the paper's scores.

Building a PanoSAMic from these files is :mod:`panosamic.model.pretrained`;
the public entry point is :func:`panosamic.weights.load_panosamic`.
"""
