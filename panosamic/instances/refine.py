"""Instance-guided refinement of the semantic map (reference 6.6; paper ablation F).

Usage, as on the model card::

    from panosamic.model.instance_semantic_fusion import refine_semantic_with_instances
    if instance_masks:
        sem_preds = refine_semantic_with_instances(sem_preds, instance_masks)
    seg_map = sem_preds.argmax(dim=0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .masks import pairwise_intersections


def _mask_stack(masks: Sequence[Any], size: tuple[int, int], device: torch.device) -> Tensor:
    """(K, H, W) bool of the usable masks, in list order.

    Each entry is a mask dict (``segmentation``) or a mask; numpy arrays are
    converted, anything else is skipped, as in the reference.
    """
    stack = []
    for entry in masks:
        seg = entry["segmentation"] if isinstance(entry, Mapping) else entry
        if isinstance(seg, np.ndarray):
            seg = torch.from_numpy(seg)
        if not isinstance(seg, Tensor):
            continue
        seg = seg.to(device=device, dtype=torch.bool)
        if tuple(seg.shape) != size:
            raise ValueError(
                f"instance mask of shape {tuple(seg.shape)} does not match the semantic map's {size}"
            )
        stack.append(seg)
    if not stack:
        return torch.zeros(0, *size, dtype=torch.bool, device=device)
    return torch.stack(stack)


def refine_semantic_with_instances(sem_preds: Tensor, masks: Sequence[Any]) -> Tensor:
    """Relabel every instance mask with the majority class inside it.

    Args:
        sem_preds: (C, H, W) logits (or (1, C, H, W)).
        masks: the model's ``instance_masks`` for this image (dicts with a
            ``segmentation`` bool (H, W)), largest first.

    Returns:
        One-hot float (C, H, W) (or (1, C, H, W)) of the refined labels, or
        ``sem_preds`` itself when there are no masks. The majority is taken
        over the argmax of the original logits (ties go to the lowest class);
        a later (smaller) mask overwrites earlier ones where they overlap;
        pixels outside every mask keep their class.
    """
    if not masks:
        return sem_preds
    batched = sem_preds.dim() == 4
    if not (sem_preds.dim() == 3 or (batched and sem_preds.shape[0] == 1)):
        raise ValueError(
            f"expected semantic logits (C, H, W) or (1, C, H, W), got {tuple(sem_preds.shape)}"
        )
    logits = sem_preds[0] if batched else sem_preds
    num_classes, h, w = logits.shape
    base = logits.argmax(dim=0)
    stack = _mask_stack(masks, (h, w), logits.device)
    refined = relabel_by_majority(base, stack, num_classes)
    one_hot = F.one_hot(refined, num_classes).permute(2, 0, 1).float()
    return one_hot[None] if batched else one_hot


def relabel_by_majority(base: Tensor, masks: Tensor, num_classes: int) -> Tensor:
    """(H, W) labels and (K, H, W) bool masks -> (H, W) labels after the majority vote.

    Mask k's class is the most frequent label of ``base`` inside it (lowest
    class on ties); each pixel takes the class of the last mask covering it.
    """
    if masks.shape[0] == 0:
        return base.clone()
    k = masks.shape[0]
    flat = masks.flatten(1)
    classes = F.one_hot(base.flatten(), num_classes).T.bool()
    counts = pairwise_intersections(flat, classes)  # (K, C) pixel counts
    majority = counts.argmax(dim=1)  # first maximum: the lowest class on ties
    covered = flat.any(dim=0)
    last = (k - 1) - flat.flip(0).to(torch.uint8).argmax(dim=0)
    refined = torch.where(covered, majority[last], base.flatten())
    return refined.view_as(base)
