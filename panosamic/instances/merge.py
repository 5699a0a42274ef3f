"""Merging instance masks across modalities and across the two views (reference 6.3, 6.4).

:func:`merge_modalities` is a greedy mask NMS over the masks of all
modalities of one view; :func:`merge_views` fuses the unshifted view's masks
with the shifted view's, rolled back by half a turn.
"""

from __future__ import annotations

import torch

from .config import AMGConfig
from .masks import MaskSet, pairwise_iou, sort_by_area


def merge_modalities(masks: MaskSet, threshold: float) -> MaskSet:
    """Greedy mask NMS across modalities (reference 6.3), sorted by area at the end.

    Candidates go in order of predicted_iou x stability_score (descending,
    stable); one is dropped when its pixel IoU with an already kept mask
    exceeds ``threshold``.
    """
    if len(masks) == 0:
        return masks
    quality = (masks.iou.cpu().double() * masks.stability.cpu().double()).tolist()
    order = sorted(range(len(quality)), key=lambda i: -quality[i])
    ordered = masks.select(order)
    iou = pairwise_iou(ordered.masks, ordered.masks)
    above = iou > threshold
    kept = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        kept[i] = not bool((above[i] & kept).any())
    return sort_by_area(ordered.select(torch.nonzero(kept).flatten()))


def unroll_shifted_view(masks: MaskSet) -> MaskSet:
    """Roll the shifted view's masks back by floor(-W / 2) columns."""
    width = masks.masks.shape[-1]
    rolled = torch.roll(masks.masks, shifts=(-width) // 2, dims=-1)
    return MaskSet(rolled, masks.iou, masks.stability, masks._areas)


def merge_views(unshifted: MaskSet, shifted: MaskSet, amg: AMGConfig) -> MaskSet:
    """Fuse the two views' masks (reference 6.4); ``shifted`` is still in the shifted frame.

    Each shifted-view mask finds the unshifted one it overlaps most (first of
    equal maxima). Above the threshold it is a duplicate and replaces that
    mask when its quality is higher by more than the margin, or about equal
    (within the margin) with a larger area; the comparison is always with the
    original unshifted mask, and the last qualifying replacement wins. Below
    the threshold it is appended. The result is sorted by area.
    """
    b = unroll_shifted_view(shifted)
    b = b.select(torch.nonzero(b.areas > 0).flatten())
    if len(unshifted) == 0:
        return b
    if len(b) == 0:
        return unshifted
    w_iou, w_stab = amg.dual_view_quality_weights
    q_a = [
        w_iou * x + w_stab * y
        for x, y in zip(unshifted.iou.tolist(), unshifted.stability.tolist(), strict=True)
    ]
    q_b = [
        w_iou * x + w_stab * y for x, y in zip(b.iou.tolist(), b.stability.tolist(), strict=True)
    ]
    area_a = unshifted.areas.tolist()
    area_b = b.areas.tolist()
    iou = pairwise_iou(b.masks, unshifted.masks)
    best_iou, best = iou.max(dim=1)  # first index of the maximum
    replacement = list(range(len(unshifted)))  # index into the combined list
    appended = []
    margin = amg.dual_view_quality_margin
    for j, (value, i) in enumerate(zip(best_iou.tolist(), best.tolist(), strict=True)):
        if value > amg.dual_view_threshold:
            diff = q_b[j] - q_a[i]
            if diff > margin or (abs(diff) <= margin and area_b[j] > area_a[i]):
                replacement[i] = len(unshifted) + j
        else:
            appended.append(len(unshifted) + j)
    combined = MaskSet.cat([unshifted, b], unshifted.masks.shape[-2:], unshifted.masks.device)
    return sort_by_area(combined.select(replacement + appended))
