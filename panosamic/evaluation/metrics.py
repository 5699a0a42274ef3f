"""Segmentation metrics as the reference defines them (spec section 5.1).

Per image: pred = argmax of the logits (ties to the first class), pixels whose
ground truth is -1 are dropped, and three K-bin histograms are counted:
intersection (pred where pred == gt), output (pred) and target (gt). The
counts are summed over the whole split; then

- IoU_c = I_c / U_c with U = output + target - intersection,
- Acc_c = I_c / target_c,
- mIoU = nanmean IoU, mAcc = nanmean Acc.

A class absent from both prediction and ground truth has IoU NaN and is left
out of the mean; a predicted but absent class has IoU 0 and counts.
Counting uses ``torch.bincount`` on CPU (the reference's ``histc`` is a GPU path).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

IGNORE_INDEX = -1


def confusion_counts(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(3, K) int64 counts [intersection, output, target] of one or more images.

    Args:
        pred: integer class map, any shape, values in [0, K-1].
        target: integer labels of the same shape, -1 = ignore.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and labels {tuple(target.shape)} differ")
    pred = pred.detach().reshape(-1).to("cpu", torch.int64)
    target = target.detach().reshape(-1).to("cpu", torch.int64)
    valid = target != IGNORE_INDEX
    pred, target = pred[valid], target[valid]
    if target.numel():
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"labels must be -1 (ignore) or a class in [0, {num_classes - 1}], found {lo}..{hi}"
            )
        lo, hi = int(pred.min()), int(pred.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"predictions must lie in [0, {num_classes - 1}], found {lo}..{hi}")
    hit = pred[pred == target]
    return torch.stack(
        [
            torch.bincount(hit, minlength=num_classes),
            torch.bincount(pred, minlength=num_classes),
            torch.bincount(target, minlength=num_classes),
        ]
    )


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, math.nan))


def _nanmean(values: Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else math.nan


@dataclass
class SegmentationScores:
    """Metrics of accumulated counts; NaN marks an undefined value."""

    miou: float
    macc: float
    iou: list[float]
    acc: list[float]

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, object]:
        names = class_names or [str(c) for c in range(len(self.iou))]
        return {
            "miou": self.miou,
            "macc": self.macc,
            "iou_per_class": dict(zip(names, self.iou, strict=True)),
            "acc_per_class": dict(zip(names, self.acc, strict=True)),
        }


def scores_from_counts(counts: Tensor) -> SegmentationScores:
    """mIoU, mAcc and per-class IoU / accuracy from (3, K) counts."""
    intersection, output, target = counts.to(torch.int64)
    union = output + target - intersection
    iou = _ratio(intersection, union)
    acc = _ratio(intersection, target)
    return SegmentationScores(_nanmean(iou), _nanmean(acc), iou.tolist(), acc.tolist())


def frame_miou(counts: Tensor) -> float:
    """Per-image mIoU: nanmean of that image's I / U (NaN if nothing is labelled)."""
    return scores_from_counts(counts).miou


def edge_column_mask(width: int, side_fraction: float) -> Tensor:
    """(W,) bool: the first and last s = max(1, round(f W)) columns."""
    s = max(1, round(side_fraction * width))
    mask = torch.zeros(width, dtype=torch.bool)
    mask[:s] = True
    mask[max(0, width - s) :] = True
    return mask


def edge_key(side_fraction: float) -> str:
    """JSON key of an edge metric: ``"<round(100 f)>pct_per_side"``."""
    return f"{round(100 * side_fraction)}pct_per_side"


def normalize_edge_fractions(fractions: Iterable[float]) -> list[float]:
    """De-duplicated, sorted descending; each must lie in (0, 0.5)."""
    values = sorted({float(f) for f in fractions}, reverse=True)
    bad = [f for f in values if not 0.0 < f < 0.5]
    if bad:
        raise ValueError(
            f"edge side fractions must lie strictly between 0 and 0.5 (per side), got {bad}; "
            "the paper's edge ratios 0.5 / 0.3 / 0.1 are 0.25 / 0.15 / 0.05 per side"
        )
    return values


@dataclass
class SegmentationMeter:
    """Accumulates split-level counts, edge counts and per-frame mIoU.

    Args:
        num_classes: K.
        edge_fractions: per-side fractions for the edge metrics.
    """

    num_classes: int
    edge_fractions: Sequence[float] = ()
    counts: Tensor = field(init=False)
    edge_counts: dict[float, Tensor] = field(init=False)
    frames: list[tuple[str, float]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.edge_fractions = normalize_edge_fractions(self.edge_fractions)
        self.counts = torch.zeros(3, self.num_classes, dtype=torch.int64)
        self.edge_counts = {f: self.counts.clone() for f in self.edge_fractions}

    def update(self, pred: Tensor, target: Tensor, name: str | None = None) -> Tensor:
        """Add one image: pred (H, W) class map, target (H, W) or (1, H, W) labels.

        Returns the image's (3, K) counts.
        """
        target = target.reshape(pred.shape).to("cpu", torch.int64)
        pred = pred.to("cpu", torch.int64)
        counts = confusion_counts(pred, target, self.num_classes)
        self.counts += counts
        for f in self.edge_fractions:
            keep = edge_column_mask(pred.shape[-1], f).expand_as(target)
            masked = torch.where(keep, target, torch.full_like(target, IGNORE_INDEX))
            self.edge_counts[f] += confusion_counts(pred, masked, self.num_classes)
        if name is not None:
            self.frames.append((name, frame_miou(counts)))
        return counts

    def update_logits(self, logits: Tensor, target: Tensor, name: str | None = None) -> Tensor:
        """Like :meth:`update` from (K, H, W) logits (argmax, ties to the first class)."""
        return self.update(logits.argmax(0), target, name)

    def state_tensor(self) -> Tensor:
        """All counts as one (1 + E, 3, K) tensor, for a distributed SUM."""
        return torch.stack([self.counts, *(self.edge_counts[f] for f in self.edge_fractions)])

    def load_state_tensor(self, state: Tensor) -> None:
        state = state.to("cpu", torch.int64)
        self.counts = state[0].clone()
        for i, f in enumerate(self.edge_fractions):
            self.edge_counts[f] = state[1 + i].clone()

    def scores(self) -> SegmentationScores:
        return scores_from_counts(self.counts)

    def edge_scores(self) -> dict[float, SegmentationScores]:
        return {f: scores_from_counts(c) for f, c in self.edge_counts.items()}
