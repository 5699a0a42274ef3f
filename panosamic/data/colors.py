"""Class colours: the palette of a set of classes and label maps painted with it."""

from __future__ import annotations

import numpy as np

IGNORE_COLOUR = (0, 0, 0)


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
