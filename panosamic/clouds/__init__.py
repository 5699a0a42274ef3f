"""Labelled point clouds: from a panorama's depth and labels, to PLY, and merged in one frame.

- :mod:`.points`: ``LabelledCloud``, points from a panorama, voxel downsampling, transforms;
- :mod:`.ply`: binary little-endian PLY files through ``plyfile``;
- :mod:`.poses`: camera-to-world poses from JSON, CSV or Stanford2D3DS's pose files;
- :mod:`.build`: the cloud of a ``panosamic segment`` panorama folder, or of a prepared
  dataset sample with its ground truth;
- :mod:`.capture`: the clouds of a whole run or dataset, written one by one, and
  one world-frame cloud of the capture with the majority class per voxel.
"""
