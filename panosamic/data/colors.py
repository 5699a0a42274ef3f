"""Class colours: each dataset's own palette, a generated one otherwise, and label maps painted.

The datasets' own colours: Stanford2D3DS the colours of its ``semantic_pretty``
images (ToF-360 too, evaluated in Stanford2D3DS's classes), Matterport3D the
``mpcat40`` table's (for a class that groups several categories, the category
of the same name or the first), Structured3D the NYU40 palette that ScanNet
and Structured3D draw with.
"""

from __future__ import annotations

import numpy as np

from .catalog import DATASET_INFO, STANFORD_CLASSES

IGNORE_COLOUR = (0, 0, 0)

_STANFORD = {
    "beam": (254, 158, 137), "board": (85, 116, 127), "bookcase": (255, 31, 33),
    "ceiling": (241, 255, 82), "chair": (0, 18, 141), "clutter": (228, 228, 228),
    "column": (89, 173, 163), "door": (113, 143, 65), "floor": (102, 168, 226),
    "sofa": (100, 22, 116), "table": (84, 84, 84), "wall": (190, 123, 75),
    "window": (0, 255, 0),
}  # fmt: skip
_MATTERPORT = {
    "wall": "aec7e8", "floor": "708090", "chair": "98df8a", "door": "c5b0d5",
    "table": "ff7f0e", "picture": "d62728", "furniture": "8c6d31", "objects": "17becf",
    "window": "ff9896", "sofa": "2ca02c", "bed": "e377c2", "sink": "843c39",
    "stairs": "9edae5", "ceiling": "9c9ede", "toilet": "e7969c", "mirror": "dbdb8d",
    "shower": "cedb9c", "bathtub": "393b79", "counter": "a55194", "shelving": "c49c94",
}  # fmt: skip
_NYU40 = (
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (178, 76, 76), (247, 182, 210), (66, 188, 102),
    (219, 219, 141), (140, 57, 197), (202, 185, 52), (51, 176, 203), (200, 54, 131),
    (92, 193, 61), (78, 71, 183), (172, 114, 82), (255, 127, 14), (91, 163, 138),
    (153, 98, 156), (140, 153, 101), (158, 218, 229), (100, 125, 154), (178, 127, 135),
    (120, 185, 128), (146, 111, 194), (44, 160, 44), (112, 128, 144), (96, 207, 209),
    (227, 119, 194), (213, 92, 176), (94, 106, 211), (82, 84, 163), (100, 85, 144),
)  # fmt: skip


def dataset_palette(name: str) -> np.ndarray:
    """(K, 3) uint8: the dataset's own colour of each of its classes, in class order."""
    classes = DATASET_INFO[name].class_names
    if classes == STANFORD_CLASSES:  # Stanford2D3DS, ToF-360
        colours = [_STANFORD[c] for c in classes]
    elif name == "matterport3d":
        colours = [tuple(bytes.fromhex(_MATTERPORT[c])) for c in classes]
    else:
        colours = list(_NYU40)
    return np.asarray(colours, dtype=np.uint8)


def class_palette(dataset: str | None, num_classes: int) -> np.ndarray:
    """The dataset's palette when its class count fits, else :func:`make_palette`."""
    if dataset in DATASET_INFO and DATASET_INFO[dataset].num_classes == num_classes:
        return dataset_palette(dataset)
    return make_palette(num_classes)


def make_palette(num_classes: int, seed: int = 7) -> np.ndarray:
    """Distinct, deterministic colours for pictures: (K, 3) uint8."""
    golden = 0.618033988749895
    hues = (np.arange(num_classes) * golden + seed * 0.1) % 1.0
    sat = np.where(np.arange(num_classes) % 2 == 0, 0.75, 0.55)
    val = np.where(np.arange(num_classes) % 3 == 0, 0.95, 0.8)
    i = np.floor(hues * 6).astype(int) % 6
    f = hues * 6 - np.floor(hues * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    choices = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)]
    rgb = np.zeros((num_classes, 3))
    for k, (r, g, b) in enumerate(choices):
        m = i == k
        rgb[m] = np.stack([r[m], g[m], b[m]], 1)
    return np.rint(rgb * 255).astype(np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices (-1 = ignore) -> (H, W, 3) uint8 colours, class c in ``palette[c]``."""
    labels = np.asarray(labels)
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"palette must be (K, 3), got {palette.shape}")
    if labels.size and labels.max() >= len(palette):
        raise ValueError(f"class {labels.max()} has no colour in a {len(palette)}-colour palette")
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    valid = labels >= 0
    out[valid] = palette[labels[valid]]
    out[~valid] = IGNORE_COLOUR
    return out
