"""Options of a training run, their defaults, and how a resume reconciles them.

Every option has a default (:data:`DEFAULTS`). A resumed run takes its options
from its ``run_config.json``; options given again on the command line must
agree with it, except the "runtime" ones (:data:`RUNTIME_KEYS`) that do not
change the result (paths, workers, logging, checkpoint frequency).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..model.config import normalize_modalities

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
SELECT_ON: tuple[str, ...] = ("heldout", "last", "none")
RESUME_FROM: tuple[str, ...] = ("last", "best")
CHANNEL_ATTENTION: tuple[str, ...] = ("config", "eca", "fc")


@dataclass(frozen=True)
class TrainOptions:
    """A training run's choices; see ``panosamic train --help`` for each."""

    dataset: str
    dataset_path: str
    config: str
    fold: int = 1
    vit_model: str = "vit_h"
    modalities: tuple[str, ...] = ("image", "depth", "normals")
    epochs: int = 50
    batch_size: int = 1
    grad_accum: int = 1
    lr_scaling: str = "reference"
    select_on: str = "heldout"
    seed: int = 0
    precision: str = "fp32"
    augment: bool = True
    depth_inlier_ratio: float = 0.995
    random_sam: bool = False
    full_checkpoints: bool = False
    channel_attention: str = "config"
    # runtime options (may change on resume)
    sam_weights_path: str | None = None
    experiments_path: str = "experiments"
    run_dir: str | None = None
    resume: str | None = None
    workers: int = 2
    device: str | None = None
    deterministic: bool = False
    gradient_checkpointing: bool = False
    checkpoint_every: int = 0
    log_every: int = 5
    keep_last: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", normalize_modalities(self.modalities))
        # absolute paths, so that a resume from another directory finds them
        for key in ("dataset_path", "sam_weights_path", "run_dir", "experiments_path"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, str(Path(value).expanduser().absolute()))
        if Path(self.config).expanduser().is_file():
            object.__setattr__(self, "config", str(Path(self.config).expanduser().absolute()))
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be at least 1, got {self.grad_accum}"),
            (self.workers >= 0, f"--workers must be 0 or more, got {self.workers}"),
            (self.log_every >= 1, f"--log-every must be at least 1, got {self.log_every}"),
            (self.checkpoint_every >= 0, "--checkpoint-every must be 0 (off) or positive"),
            (
                self.precision in PRECISIONS,
                f"--precision must be one of {PRECISIONS}, got {self.precision!r}",
            ),
            (self.select_on in SELECT_ON, f"--select-on must be one of {SELECT_ON}"),
            (self.resume in (None, *RESUME_FROM), f"--resume must be one of {RESUME_FROM}"),
            (
                self.channel_attention in CHANNEL_ATTENTION,
                f"--channel-attention must be one of {CHANNEL_ATTENTION}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.random_sam and self.sam_weights_path:
            raise ValueError("--random-sam and --sam-weights-path exclude each other")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modalities"] = list(self.modalities)
        return data


RUNTIME_KEYS: frozenset[str] = frozenset(
    {
        "dataset_path",
        "sam_weights_path",
        "experiments_path",
        "run_dir",
        "resume",
        "workers",
        "device",
        "deterministic",
        "gradient_checkpointing",
        "checkpoint_every",
        "log_every",
        "keep_last",
    }
)
REQUIRED_KEYS: tuple[str, ...] = ("dataset", "dataset_path", "config")


def option_names() -> list[str]:
    return [f.name for f in fields(TrainOptions)]


def options_from_values(
    values: dict[str, Any], saved: dict[str, Any] | None = None
) -> TrainOptions:
    """Merge defaults, a resumed run's saved options and the values given now.

    ``values`` holds only what the user gave (``None`` = not given). With
    ``saved``, a given value that changes the training result must equal the
    saved one.
    """
    given = {k: v for k, v in values.items() if v is not None and k in option_names()}
    merged: dict[str, Any] = {}
    if saved is not None:
        merged.update({k: v for k, v in saved.items() if k in option_names()})
        conflicts = []
        for key, value in given.items():
            if key in RUNTIME_KEYS or key not in saved:
                continue
            if _canonical(key, value) != _canonical(key, saved[key]):
                conflicts.append(f"{key}: run has {saved[key]!r}, command line {value!r}")
        if conflicts:
            raise ValueError(
                "cannot resume with different settings (they change the result): "
                + "; ".join(conflicts)
                + ". Leave them out to use the run's own, or start a new run."
            )
    merged.update(given)
    missing = [k for k in REQUIRED_KEYS if merged.get(k) is None]
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise ValueError(f"missing required options: {flags}")
    return TrainOptions(**merged)


def _canonical(key: str, value: Any) -> Any:
    if key == "modalities":
        return normalize_modalities(value)
    if key == "config":
        return Path(str(value)).stem
    return value
