"""The three input modalities, their canonical order and how each is encoded for the model.

Every modality reaches the network as a float (3, H, W) image with values in
[0, 255]: RGB as it is; depth as the pseudo-disparity of :func:`pseudo_disparity`,
replicated to three channels; surface normals as their RGB encoding
(``rgb = (n + 1) * 127.5``, see :mod:`panosamic.data.normals`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MODALITIES: tuple[str, ...] = ("image", "depth", "normals")

# Short names of modality sets, as in the published variant names (stanford2d3ds-vith-rgbdn-fold1).
MODALITY_TAGS: dict[str, tuple[str, ...]] = {
    "rgb": ("image",),
    "rgbd": ("image", "depth"),
    "rgbn": ("image", "normals"),
    "rgbdn": ("image", "depth", "normals"),
}


def known_modalities(modalities: Any) -> tuple[str, ...]:
    """Known, distinct modality names in canonical order (a sequence or a comma-separated string)."""
    if isinstance(modalities, str):
        modalities = [m.strip() for m in modalities.split(",") if m.strip()]
    names = list(modalities)
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {list(MODALITIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"modalities listed twice: {names}")
    return tuple(m for m in MODALITIES if m in names)


def normalize_modalities(modalities: Any) -> tuple[str, ...]:
    """A model's modalities: :func:`known_modalities`, and ``image`` is mandatory."""
    names = known_modalities(modalities)
    if "image" not in names:
        raise ValueError(f"the 'image' modality is required, got {list(names)}")
    return names


def modality_tag(modalities: Any) -> str:
    """``("image", "depth")`` -> ``"rgbd"``."""
    names = known_modalities(modalities)
    return next(tag for tag, mods in MODALITY_TAGS.items() if mods == names)


def pseudo_disparity(metres: np.ndarray, valid: np.ndarray, d_t: float) -> np.ndarray:
    """(H, W) depth in metres -> (H, W) float32 ``255 (1 - min(d, d_t) / d_t)``, 0 where invalid.

    255 at distance 0, 0 at or beyond ``d_t`` (the depth threshold a checkpoint
    was trained with) and wherever ``valid`` is False. The model gets it
    replicated to three channels.
    """
    disparity = np.where(valid, 1.0 - np.clip(metres, 0.0, d_t) / d_t, 0.0)
    return (disparity * 255.0).astype(np.float32)
