"""Options of a training run: defaults, command-line help, and how a resume reconciles them.

:class:`TrainOptions` is the one place a training option is declared: its
default, its check and its ``panosamic train`` help. A resumed run takes its options
from its ``run_config.json``; options given again on the command line must
agree with it, except the "runtime" ones (:data:`RUNTIME_KEYS`) that do not
change the result (paths, workers, logging, checkpoint frequency).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..modalities import normalize_modalities
from ..model.config import PRECISIONS

SELECT_ON: tuple[str, ...] = ("heldout", "last", "none")
LR_SCALING: tuple[str, ...] = ("reference", "none")
RESUME_FROM: tuple[str, ...] = ("last", "best")
CHANNEL_ATTENTION: tuple[str, ...] = ("config", "eca", "fc")
REQUIRED_KEYS: tuple[str, ...] = ("dataset", "dataset_path", "config")


def option(
    default: Any,
    help: str,
    group: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    type: Any = None,
) -> Any:
    """A training option: its default, and how ``panosamic train`` offers it (``help``, the
    help ``group``, a ``flag`` other than ``--<name>``, ``choices``, a ``type`` for argparse).
    Options that other commands share keep their common spelling and help
    (:mod:`panosamic.cli.options`); ``help`` then adds what is special to training."""
    cli = {"help": help, "group": group, "flag": flag, "choices": choices, "type": type}
    return field(default=default, metadata={"cli": cli})


DATA, RECIPE, RUN = "data and model", "training recipe", "run directory, checkpoints, resume"


@dataclass(frozen=True)
class TrainOptions:
    """A training run's choices; ``panosamic train --help`` is generated from these fields."""

    dataset: str = option(None, "", DATA)
    dataset_path: str = option(None, "", DATA)
    config: str = option(None, "", DATA)
    fold: int = option(1, "fold (Stanford 1-3; Matterport/Structured3D 1-2)", DATA, type=int)
    vit_model: str = option("vit_h", "(ignored if the config has an 'encoder' section)", DATA)
    modalities: tuple[str, ...] = option(("image", "depth", "normals"), "", DATA)
    channel_attention: str = option(
        "config",
        "channel attention: as the config says, ECA (the published checkpoints, the paper's "
        "parameter counts) or the fully connected MLP (the reference's JSON configs)",
        DATA,
        choices=CHANNEL_ATTENTION,
    )
    depth_inlier_ratio: float = option(
        0.995, "depth threshold d_t = this quantile of training depths", DATA, type=float
    )
    augment: bool = option(
        True, "no flip / roll / colour permutation on the training split", DATA, flag="--no-augment"
    )
    random_sam: bool = option(
        False,
        "randomly initialised frozen SAM encoder (tests / tiny configs only; implies full "
        "checkpoints)",
        DATA,
    )
    epochs: int = option(
        50, "epochs (the paper's 50; the reference's default: 1)", RECIPE, type=int
    )
    batch_size: int = option(1, "batch per process", RECIPE, type=int)
    grad_accum: int = option(
        1, "micro-batches per optimizer step (gradient accumulation)", RECIPE, type=int
    )
    lr_scaling: str = option(
        "reference",
        "reference: max_lr x total batch / 4 (total = processes x batch x accumulation); "
        "none: the config's max_lr as is",
        RECIPE,
        choices=LR_SCALING,
    )
    select_on: str = option(
        "heldout",
        "model_best.pth = best mIoU on the held-out split (reference) / the last epoch (still "
        "validated) / the last epoch without validation",
        RECIPE,
        choices=SELECT_ON,
    )
    seed: int = option(0, "seed of initialisation, order and augmentation", RECIPE, type=int)
    precision: str = option(
        "fp32", "(losses in float32, fp16 with a loss scaler; the reference: fp32)", RECIPE
    )
    full_checkpoints: bool = option(
        False, "store every tensor (the reference's layout) instead of only the trainable ones", RUN
    )
    # runtime options (may change on resume)
    sam_weights_path: str | None = option(None, "", DATA)
    experiments_path: str = option(
        "experiments", "root of the run directories (<root>/<dataset>/<time>_<ID>)", RUN
    )
    run_dir: str | None = option(
        None, "use this run directory instead of a new timestamped one", RUN
    )
    resume: str | None = option(
        None,
        "continue --run-dir (or the latest run of this experiment ID) from model_<last|best>.pth",
        RUN,
        choices=RESUME_FROM,
    )
    workers: int = option(2, "data-loading worker processes per process", RUN)
    device: str | None = option(None, "", RUN)
    deterministic: bool = option(
        False, "deterministic kernels (bit-exact resume on CPU; close on GPU)", RECIPE
    )
    gradient_checkpointing: bool = option(
        False,
        "recompute each fusion block in the backward pass: less memory, same result, slower",
        RECIPE,
    )
    checkpoint_every: int = option(
        0,
        "also write model_last.pth every N optimizer steps inside an epoch (0: epoch ends)",
        RUN,
        type=int,
    )
    log_every: int = option(5, "TensorBoard step scalars every N steps", RUN, type=int)
    keep_last: bool = option(
        True, "delete model_last.pth at the end, as the reference does", RUN, flag="--delete-last"
    )

    def __post_init__(self) -> None:
        missing = [k for k in REQUIRED_KEYS if getattr(self, k) is None]
        if missing:
            flags = ", ".join("--" + k.replace("_", "-") for k in missing)
            raise ValueError(f"missing required options: {flags}")
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
            (
                self.precision != "int8",
                "--precision int8 is for inference (segment, evaluate); train in fp32, bf16 or fp16",
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
    return TrainOptions(**merged)


def _canonical(key: str, value: Any) -> Any:
    if key == "modalities":
        return normalize_modalities(value)
    if key == "config":
        return Path(str(value)).stem
    return value
