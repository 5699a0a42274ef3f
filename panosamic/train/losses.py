"""Training losses of PanoSAMic, as the reference computes them.

The JSON config's ``loss`` section maps term names to multipliers::

    {"CrossEntropyLoss": 1, "JaccardLoss": 1,
     "ScheduledLoss": {"transition_start_ratio": 0.5, "transition_finish_ratio": 0.9}}

Terms are evaluated in the order CE, Focal, Dice, Jaccard. The first non-zero
term is multiplied by ``w1`` and every later one by ``w2``; without a schedule
both are 1 (a plain sum). With ``ScheduledLoss`` the weights follow the
alternating CE/Jaccard schedule (:func:`scheduled_ce_weight`).

Labels use -1 for "ignore". Logits are (N, K, H, W), labels (N, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -1
LOSS_TERMS: tuple[str, ...] = ("CrossEntropyLoss", "FocalLoss", "DiceLoss", "JaccardLoss")
SCHEDULE_EPS = 1e-6


# --------------------------------------------------------------------------- terms
def _check_shapes(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 4 or labels.dim() != 3:
        raise ValueError(
            f"expected logits (N, K, H, W) and labels (N, H, W), got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if logits.shape[0] != labels.shape[0] or logits.shape[2:] != labels.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match"
        )


def _zero_like_graph(logits: Tensor) -> Tensor:
    """A zero that is still connected to ``logits`` (backward gives zero gradients)."""
    return logits.sum() * 0.0


def weighted_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    class_weights: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Multi-class cross-entropy on logits, ignore label -1, reduction "mean".

    "Mean" divides by the summed weights of the valid pixels, so the scale of
    ``class_weights`` (K,) cancels. A batch without a single valid pixel gives
    0 (PyTorch would give NaN, which Ranger21 would spread into every weight).
    """
    _check_shapes(logits, labels)
    if not bool((labels != IGNORE_INDEX).any()):
        return _zero_like_graph(logits)
    weight = None if class_weights is None else class_weights.to(logits.device, logits.dtype)
    return F.cross_entropy(
        logits,
        labels,
        weight=weight,
        ignore_index=IGNORE_INDEX,
        reduction="mean",
        label_smoothing=label_smoothing,
    )


def reference_jaccard_loss(logits: Tensor, labels: Tensor, eps: float = 1e-6) -> Tensor:
    """The reference's soft-IoU loss (sigmoid per class, "multilabel" mode).

    1. Logits of ignored pixels are set to 0, so each ignored pixel has
       p = sigmoid(0) = 0.5 in every class and adds 0.5 to every class's
       "union" (the reference's behaviour; its gradient is zero).
    2. p = sigmoid(z) per class (not softmax), one-hot targets y with ignored
       pixels all-zero.
    3. Per class over batch and pixels: I = sum p y, S = sum (p + y),
       score = I / max(S - I, eps), loss = 1 - score, 0 for classes absent from
       the batch's targets.
    4. Mean over all K classes (absent classes count in the denominator).

    Equals ``pytorch_optimizer.JaccardLoss(mode="multilabel", from_logits=True)``
    applied to the masked logits and one-hot targets.

    Args:
        logits: (N, K, H, W).
        labels: (N, H, W) int64 in [-1, K-1].
    Returns:
        scalar tensor.
    """
    _check_shapes(logits, labels)
    num_classes = logits.shape[1]
    valid = labels != IGNORE_INDEX
    z = logits * valid.unsqueeze(1).to(logits.dtype)
    p = F.logsigmoid(z).exp()
    onehot = F.one_hot(labels.clamp_min(0), num_classes).permute(0, 3, 1, 2)
    onehot = onehot.bool() & valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = torch.where(onehot, p, 0.0).sum(dims)
    target_sum = onehot.sum(dims)
    cardinality = p.sum(dims) + target_sum.to(p.dtype)
    score = intersection / (cardinality - intersection).clamp_min(eps)
    loss = (1.0 - score) * (target_sum > 0).to(p.dtype)
    return loss.mean()


def focal_loss(logits: Tensor, labels: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """The reference's (unused) focal loss: gamma 2, alpha = class weight of the target.

    Mean over all pixels, ignored ones included (they have ce = 0).
    """
    _check_shapes(logits, labels)
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    pt = torch.exp(-ce)
    focal = (1.0 - pt) ** 2 * ce
    if class_weights is not None:
        alpha = class_weights.to(logits.device, logits.dtype)[labels.clamp_min(0)]
        focal = focal * alpha
    return focal.mean()


def dice_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """The reference's (unused) Dice term: ``pytorch_optimizer.DiceLoss``, multiclass."""
    from pytorch_optimizer import DiceLoss

    _check_shapes(logits, labels)
    return DiceLoss(mode="multiclass", from_logits=True, ignore_index=IGNORE_INDEX)(logits, labels)


# ------------------------------------------------------------------------ schedule
@dataclass(frozen=True)
class LossSchedule:
    """The alternating CE/Jaccard schedule (Taubert et al.), as the reference computes it.

    ``total_steps`` T is epochs x steps per epoch; the step k counts from 1.
    """

    total_steps: int
    transition_start_ratio: float = 0.5
    transition_finish_ratio: float = 0.9

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"the loss schedule needs total_steps >= 1, got {self.total_steps}")
        if not 0 <= self.transition_start_ratio < self.transition_finish_ratio:
            raise ValueError(
                "ScheduledLoss needs 0 <= transition_start_ratio < transition_finish_ratio, got "
                f"{self.transition_start_ratio} and {self.transition_finish_ratio}"
            )

    def ce_weight(self, step: int) -> float:
        """w(k): the CE weight; the other term gets 1 - w.

        a(k) = min(1, max(eps, 1 - f k)), f = (1 - eps) / (s_b - s_a);
        b(k) = 1 - cos(min(pi/2, max(0, pi (k - s_a) / (2 (s_b - s_a)))));
        w = min(1, a + b), with s_a, s_b = T times the start and finish ratios.
        """
        s_a = self.total_steps * self.transition_start_ratio
        s_b = self.total_steps * self.transition_finish_ratio
        span = s_b - s_a
        slope = (1.0 - SCHEDULE_EPS) / span
        a = min(1.0, max(SCHEDULE_EPS, 1.0 - slope * step))
        b = 1.0 - math.cos(min(math.pi / 2, max(0.0, math.pi * (step - s_a) / (2 * span))))
        return min(1.0, a + b)


# ---------------------------------------------------------------------- combined
class PanoSAMicLoss:
    """The configured combination of CE, Focal, Dice and Jaccard.

    Args:
        loss_config: the JSON ``loss`` section (term name -> multiplier, optional
            ``ScheduledLoss`` and ``label_smoothing``).
        class_weights: (K,) cross-entropy/focal class weights. Non-finite
            weights (classes absent from training) become 0, so they cannot turn
            a validation loss into NaN.
        total_steps: T for the schedule (epochs x optimizer steps per epoch).
    """

    def __init__(
        self,
        loss_config: Mapping[str, Any],
        class_weights: Tensor | None = None,
        total_steps: int | None = None,
    ) -> None:
        config = {k: v for k, v in loss_config.items() if not str(k).startswith("//")}
        known = {*LOSS_TERMS, "ScheduledLoss", "label_smoothing"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown loss config keys {unknown}; known: {sorted(known)}")
        self.multipliers = {name: float(config[name]) for name in LOSS_TERMS if name in config}
        if not self.multipliers:
            raise ValueError(f"the loss config enables no term; give one of {list(LOSS_TERMS)}")
        self.label_smoothing = float(config.get("label_smoothing", 0.0))
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            class_weights = torch.where(torch.isfinite(class_weights), class_weights, 0.0)
        self.class_weights = class_weights
        self.schedule = self._build_schedule(config.get("ScheduledLoss"), total_steps)
        self.last_weights = (1.0, 1.0)

    def _build_schedule(self, section: Any, total_steps: int | None) -> LossSchedule | None:
        if section is None:
            return None
        names = set(self.multipliers)
        has_ce = self.multipliers.get("CrossEntropyLoss", 0.0) != 0.0
        if not has_ce or "FocalLoss" in names or len(names & {"DiceLoss", "JaccardLoss"}) != 1:
            raise ValueError(
                "ScheduledLoss needs a non-zero CrossEntropyLoss, no FocalLoss and exactly one of "
                f"DiceLoss or JaccardLoss; the config has {sorted(names)}"
            )
        if total_steps is None:
            raise ValueError("ScheduledLoss needs the total number of training steps")
        section = dict(section or {})
        return LossSchedule(
            total_steps=total_steps,
            transition_start_ratio=float(section.get("transition_start_ratio", 0.5)),
            transition_finish_ratio=float(section.get("transition_finish_ratio", 0.9)),
        )

    def weights(self, step: int | None) -> tuple[float, float]:
        """(w1, w2) at global step ``step``; ``None`` reuses the last training step's."""
        if step is None:
            return self.last_weights
        if self.schedule is None:
            self.last_weights = (1.0, 1.0)
        else:
            w = self.schedule.ce_weight(step)
            self.last_weights = (w, 1.0 - w)
        return self.last_weights

    def terms(self, logits: Tensor, labels: Tensor) -> list[Tensor]:
        """Each enabled term times its multiplier, in the order CE, Focal, Dice, Jaccard."""
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # losses in float32 under mixed precision
        out = []
        for name, multiplier in self.multipliers.items():
            if name == "CrossEntropyLoss":
                value = weighted_cross_entropy(
                    logits, labels, self.class_weights, self.label_smoothing
                )
            elif name == "FocalLoss":
                value = focal_loss(logits, labels, self.class_weights)
            elif name == "DiceLoss":
                value = dice_loss(logits, labels)
            else:
                value = reference_jaccard_loss(logits, labels)
            out.append(multiplier * value)
        return out

    def __call__(self, logits: Tensor, labels: Tensor, step: int | None = None) -> Tensor:
        """The combined loss of (N, K, H, W) logits against (N, H, W) labels.

        Terms that are exactly 0 are dropped before weighting (the reference
        filters by truthiness), so a zero first term lets the next one take w1.
        """
        w1, w2 = self.weights(step)
        kept = [t for t in self.terms(logits, labels) if bool(t.detach() != 0)]
        if not kept:
            return _zero_like_graph(logits)
        total = w1 * kept[0]
        for term in kept[1:]:
            total = total + w2 * term
        return total


def stack_batch(
    outputs: list[dict[str, Tensor]], labels: list[dict[str, Tensor]]
) -> tuple[Tensor, Tensor]:
    """Per-image model outputs and label dicts -> (N, K, H, W) logits, (N, H, W) labels."""
    logits = [o["sem_preds"] for o in outputs]
    sems = [lab["semantics"] for lab in labels]
    sizes = {tuple(t.shape[-2:]) for t in logits} | {tuple(s.shape[-2:]) for s in sems}
    if len(sizes) != 1:
        raise ValueError(
            f"all images and labels of a batch must share one size, got {sorted(sizes)}"
        )
    stacked = torch.stack(logits)
    target = torch.cat([s.reshape(1, *s.shape[-2:]) for s in sems]).to(stacked.device)
    return stacked, target.long()
