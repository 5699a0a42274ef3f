"""Binary masks with their scores, and exact pixel counting between mask sets.

Merging and refinement only need pixel counts: how many pixels two masks
share, how many a mask covers. They come from matrix products of the
flattened masks (exact integer sums), so the greedy decisions loop over
numbers, not over pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

PIXEL_CHUNK = 1 << 16  # pixels per counting matrix product


def count_common(a: Tensor, b: Tensor) -> Tensor:
    """(Ka, P), (Kb, P) bool -> (Ka, Kb) int64 counts of pixels set in both (P < 2^24).

    An int8 matrix product (exact int32 sums) where PyTorch has one on the
    CPU: about three times faster than float32, thirty times faster than
    summing booleans; float32 elsewhere (exact too: sums of 0/1 below 2^24).
    """
    if a.device.type == "cpu" and hasattr(torch, "_int_mm"):
        try:
            return torch._int_mm(a.view(torch.int8), b.view(torch.int8).T).long()
        except RuntimeError:  # an unsupported shape or build: the float route below
            pass
    return (a.float() @ b.float().T).round().long()


def pairwise_intersections(a: Tensor, b: Tensor) -> Tensor:
    """(Ka, ...) and (Kb, ...) bool masks of equal size -> (Ka, Kb) int64 pixel intersections."""
    a = a.flatten(1)
    b = b.flatten(1)
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.int64, device=a.device)
    if out.numel() == 0:
        return out
    for start in range(0, a.shape[1], PIXEL_CHUNK):
        sl = slice(start, start + PIXEL_CHUNK)
        out += count_common(a[:, sl], b[:, sl])
    return out


def count_pixels(masks: Tensor) -> Tensor:
    """(K, ...) bool masks -> (K,) int64 pixel counts (intersections with an all-true mask)."""
    everything = torch.ones(1, *masks.shape[1:], dtype=torch.bool, device=masks.device)
    return pairwise_intersections(masks, everything)[:, 0]


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """(Ka, H, W), (Kb, H, W) bool -> (Ka, Kb) float64 pixel IoU on the CPU (0 where the union is empty)."""
    inter = pairwise_intersections(a, b).cpu()
    area_a = count_pixels(a).cpu()
    area_b = count_pixels(b).cpu()
    union = area_a[:, None] + area_b[None, :] - inter
    iou = inter.double() / union.clamp(min=1).double()
    return torch.where(union > 0, iou, torch.zeros_like(iou))


@dataclass
class MaskSet:
    """Binary masks with their scores.

    ``masks``: (K, H, W) bool; ``iou`` and ``stability``: (K,) float32.
    The pixel counts are computed once, on first use.
    """

    masks: Tensor
    iou: Tensor
    stability: Tensor
    _areas: Tensor | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.masks.shape[0]

    @property
    def areas(self) -> Tensor:
        """(K,) int64 pixel counts."""
        if self._areas is None:
            self._areas = count_pixels(self.masks)
        return self._areas

    def select(self, index: Tensor | list[int]) -> MaskSet:
        index = torch.as_tensor(index, dtype=torch.long, device=self.masks.device)
        areas = None if self._areas is None else self._areas[index]
        return MaskSet(self.masks[index], self.iou[index], self.stability[index], areas)

    @staticmethod
    def empty(size: tuple[int, int], device: torch.device | str = "cpu") -> MaskSet:
        return MaskSet(
            torch.zeros(0, *size, dtype=torch.bool, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, device=device),
        )

    @staticmethod
    def cat(sets: list[MaskSet], size: tuple[int, int], device: torch.device | str) -> MaskSet:
        sets = [s for s in sets if len(s)]
        if not sets:
            return MaskSet.empty(size, device)
        return MaskSet(
            torch.cat([s.masks for s in sets]),
            torch.cat([s.iou for s in sets]),
            torch.cat([s.stability for s in sets]),
        )

    def to_dicts(self) -> list[dict[str, Any]]:
        """The reference's output format: one dict per mask."""
        areas = self.areas.tolist()
        ious = self.iou.tolist()
        stabilities = self.stability.tolist()
        return [
            {
                "segmentation": self.masks[i],
                "area": int(areas[i]),
                "predicted_iou": float(ious[i]),
                "stability_score": float(stabilities[i]),
            }
            for i in range(len(self))
        ]


def sort_by_area(masks: MaskSet) -> MaskSet:
    """Largest area first; equal areas keep their order (a stable sort)."""
    areas = masks.areas.tolist()
    order = sorted(range(len(areas)), key=lambda i: -areas[i])
    return masks.select(order)


def remove_small_regions(masks: Tensor, min_area: int) -> Tensor:
    """Drop 4-connected regions smaller than ``min_area`` pixels from (K, H, W) bool masks.

    No hole filling (as the reference would do it). One ``scipy.ndimage.label``
    call labels all masks at once (the structure does not connect masks).
    """
    if min_area <= 0 or masks.shape[0] == 0:
        return masks
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, _ = ndimage.label(masks.cpu().numpy(), structure=structure)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area
    keep[0] = False
    return torch.from_numpy(keep[labels]).to(masks.device)
