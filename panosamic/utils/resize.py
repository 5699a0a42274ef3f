"""Resizing maps between a panorama's own size and the network's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (N, C, H, W) to ``size`` (antialiased when shrinking); identity at equal size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
