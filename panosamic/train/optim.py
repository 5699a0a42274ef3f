"""Optimizer and learning rate, as the reference sets them up.

The config's ``lr_scheduler`` section::

    {"start_lr": 1e-5, "max_lr": 5e-4, "warm_up_ratio": 0.1, "wind_down_ratio": 10}

- LR scaling (reference): ``max_lr_eff = max_lr * total_batch / 4``, total
  batch = processes x batch size (x gradient-accumulation steps here).
- Ranger21 (``pytorch_optimizer``) with ``num_iterations = L * epochs``,
  ``num_warm_up_iterations = int(warm_up_ratio * L)``,
  ``num_warm_down_iterations = int(wind_down_ratio * L)`` (10 -> the last 10
  epochs), ``warm_down_min_lr = max_lr_eff * 1e-4``; everything else at the
  library's defaults. L is the number of optimizer steps per epoch.
- Any other optimizer name: RAdam (lr 1, decoupled, no weight decay) driven by
  a LambdaLR that returns the absolute learning rate (the reference's unused
  alternative; ``wind_down_ratio * L`` is then an absolute start step).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

NOMINAL_BATCH_SIZE = 4
LR_SCALINGS: tuple[str, ...] = ("reference", "none")
WARM_DOWN_MIN_FACTOR = 1e-4

# Defaults of the reference when a key is missing from ``lr_scheduler``.
LR_DEFAULTS: dict[str, Any] = {
    "start_lr": 1e-4,
    "max_lr": 1e-3,
    "intermediate_lr": None,
    "warm_up_ratio": 0.1,
    "wind_down_ratio": 0.7,
}


@dataclass(frozen=True)
class LRPlan:
    """The resolved learning-rate plan of a run (recorded in ``run_config.json``)."""

    optimizer: str
    max_lr: float  # the config's value
    max_lr_eff: float  # after scaling
    start_lr: float
    intermediate_lr: float | None
    total_batch: int
    lr_scaling: str
    steps_per_epoch: int
    epochs: int
    warm_up_steps: int
    warm_down_steps: int  # Ranger21: a length; RAdam: an absolute start step

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scaled_max_lr(max_lr: float, total_batch: int, lr_scaling: str = "reference") -> float:
    """``max_lr * total_batch / 4`` (reference) or ``max_lr`` unchanged (none)."""
    if lr_scaling not in LR_SCALINGS:
        raise ValueError(f"lr scaling must be one of {LR_SCALINGS}, got {lr_scaling!r}")
    if total_batch < 1:
        raise ValueError(f"the total batch must be positive, got {total_batch}")
    if lr_scaling == "none":
        return float(max_lr)
    return float(max_lr) * total_batch / NOMINAL_BATCH_SIZE


def plan_learning_rate(
    optimizer_name: str,
    lr_config: Mapping[str, Any] | None,
    *,
    steps_per_epoch: int,
    epochs: int,
    total_batch: int,
    lr_scaling: str = "reference",
) -> LRPlan:
    """Resolve the config's ``lr_scheduler`` section for a run of ``epochs`` x ``steps_per_epoch``."""
    if steps_per_epoch < 1:
        raise ValueError(
            f"an epoch has {steps_per_epoch} optimizer steps: the training split is smaller "
            "than one (total) batch; lower --batch-size / --grad-accum or use more data"
        )
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    cfg = dict(LR_DEFAULTS)
    unknown = sorted(k for k in (lr_config or {}) if k not in cfg and not str(k).startswith("//"))
    if unknown:
        raise ValueError(f"unknown lr_scheduler keys {unknown}; known: {sorted(cfg)}")
    cfg.update({k: v for k, v in (lr_config or {}).items() if k in cfg})
    max_lr = float(cfg["max_lr"])
    return LRPlan(
        optimizer=str(optimizer_name),
        max_lr=max_lr,
        max_lr_eff=scaled_max_lr(max_lr, total_batch, lr_scaling),
        start_lr=float(cfg["start_lr"]),
        intermediate_lr=None if cfg["intermediate_lr"] is None else float(cfg["intermediate_lr"]),
        total_batch=total_batch,
        lr_scaling=lr_scaling,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        warm_up_steps=int(float(cfg["warm_up_ratio"]) * steps_per_epoch),
        warm_down_steps=int(float(cfg["wind_down_ratio"]) * steps_per_epoch),
    )


def ranger21_lr(plan: LRPlan, step: int) -> float:
    """Ranger21's learning rate at optimizer step ``step`` (1-based).

    Warm-up: ``max_lr_eff * min(1, k / W_up)`` for k <= W_up. Warm-down, from
    k >= N - W_dn: linear to ``min_lr = 1e-4 max_lr_eff`` at the last step.
    """
    lr = plan.max_lr_eff
    if plan.warm_up_steps > 0 and step <= plan.warm_up_steps:
        lr = lr * min(1.0, step / plan.warm_up_steps)
    start = plan.total_steps - plan.warm_down_steps
    if step >= start:
        min_lr = plan.max_lr_eff * WARM_DOWN_MIN_FACTOR
        frac = min(max(step + 1 - start, 1) / (plan.warm_down_steps + 1), 1.0)
        lr = max(plan.max_lr_eff - (plan.max_lr_eff - min_lr) * frac, min_lr)
    return lr


def radam_lr(plan: LRPlan, step: int) -> float:
    """The absolute LR of the reference's RAdam + LambdaLR path at step ``step`` (0-based)."""
    w_up, s_wd, total = plan.warm_up_steps, plan.warm_down_steps, plan.total_steps
    if step < w_up and step >= s_wd:
        raise ValueError(
            f"warm-up ({w_up} steps) overlaps the wind-down start (step {s_wd}); "
            "raise wind_down_ratio or lower warm_up_ratio"
        )
    if step < w_up:
        return plan.start_lr + (plan.max_lr_eff - plan.start_lr) * step / w_up
    intermediate = plan.intermediate_lr
    if step < s_wd:
        if intermediate is None:
            return plan.max_lr_eff
        frac = (step - w_up) / max(s_wd - w_up, 1)
        return plan.max_lr_eff + (intermediate - plan.max_lr_eff) * frac
    end_lr = plan.max_lr_eff if intermediate is None else intermediate
    return end_lr * (1.0 - (step - s_wd) / max(total - s_wd, 1))


def build_optimizer(
    params: Iterable[nn.Parameter], plan: LRPlan
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """Ranger21 with the reference's arguments, or RAdam + LambdaLR for other names."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if plan.optimizer == "Ranger21":
        from pytorch_optimizer import Ranger21

        optimizer = Ranger21(
            params,
            num_iterations=plan.total_steps,
            lr=plan.max_lr_eff,
            num_warm_up_iterations=plan.warm_up_steps,
            num_warm_down_iterations=plan.warm_down_steps,
            warm_down_min_lr=plan.max_lr_eff * WARM_DOWN_MIN_FACTOR,
        )
        return optimizer, None
    optimizer = torch.optim.RAdam(params, lr=1.0, weight_decay=0.0, decoupled_weight_decay=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: radam_lr(plan, k))
    return optimizer, scheduler


def current_lr(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None
) -> float:
    """The learning rate of the last step (Ranger21's ``current_lr``, else the group's lr)."""
    if scheduler is None and hasattr(optimizer, "current_lr"):
        return float(optimizer.current_lr)
    return float(optimizer.param_groups[0]["lr"])
