"""The reference implementation's scripts, run with its flags: the model card's commands.

``python panosamic/evaluation/evaluate.py --dataset_path ... --num_gpus 1`` and
``python panosamic/evaluation/train.py ...`` (two tiny files that call :func:`main`)
take the reference's flags and run ``panosamic evaluate`` / ``panosamic train``:
this module only translates the flags, nothing is implemented twice.

- ``--num_gpus N``: N = 1 runs the command in this process; N > 1 starts N
  processes on this node as ``torchrun --standalone --nproc-per-node N`` does
  (one per GPU, or gloo processes on a CPU). Under ``torchrun`` or ``srun``
  (``WORLD_SIZE`` set) the command runs in this process, the reference's way.
- ``--workers_per_gpu`` is ``--workers``; ``--config_path`` ``--config``.
- ``evaluate.py --checkpoint REPO_OR_PATH --subfolder VARIANT`` evaluates a
  published or exported checkpoint; ``evaluate.py --experiments_path DIR`` the
  newest training run of the experiment ID (``<config stem>_F<fold>_V<h|l|b|c>_M<n>``)
  under ``DIR/<dataset>``, from its ``model_best.pth``, as the reference does.
- ``--compute_efficiency true`` prints the parameter and FLOP report of
  ``panosamic info`` for the model instead, and exits.

An unknown flag is argparse's error, naming the flags this script supports.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ..data.catalog import DATASETS
from ..hub.catalog import PUBLISHED_VARIANTS, VIT_MODELS

SCRIPTS: tuple[str, ...] = ("evaluate", "train")
# The reference parser's defaults (None below: not given, so the checkpoint or run decides).
REFERENCE_VIT_MODEL = "vit_h"
REFERENCE_MODALITIES = "image,depth,normals"
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "none")


def _boolean(text: str) -> bool:
    """A yes/no word (the reference's ``type=bool`` took any non-empty text, "False" too, as yes)."""
    word = text.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise argparse.ArgumentTypeError(f"expected one of {TRUE_WORDS + FALSE_WORDS}, got {text!r}")


def _resume(text: str) -> str | None:
    return None if text == "None" else text


# flag -> (scripts that take it, argparse keywords): the reference parser's flags, in its order.
FLAGS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "--dataset_path": (SCRIPTS, {"required": True, "help": "prepared dataset root"}),
    "--config_path": (SCRIPTS, {"required": True, "help": "JSON config (file or packaged name)"}),
    "--experiments_path": (
        SCRIPTS,
        {"help": "root of the run directories (train: required; evaluate: its newest run)"},
    ),
    "--checkpoint": (
        ("evaluate",),
        {"help": "Hub repo id, Hub-layout folder, model.safetensors file or run"},
    ),
    "--subfolder": (("evaluate",), {"help": "the variant inside --checkpoint"}),
    "--sam_weights_path": (SCRIPTS, {"help": "SAM .pth file or a folder holding it"}),
    "--num_gpus": (SCRIPTS, {"type": int, "default": 1, "help": "processes on this node [1]"}),
    "--workers_per_gpu": (
        SCRIPTS,
        {"type": int, "default": 2, "help": "data-loading workers per process [2]"},
    ),
    "--dataset": (SCRIPTS, {"required": True, "choices": DATASETS}),
    "--fold": (SCRIPTS, {"type": int, "default": 1, "help": "[1]"}),
    "--batch_size": (SCRIPTS, {"type": int, "default": 1, "help": "per process [1]"}),
    "--epochs": (SCRIPTS, {"type": int, "default": 1, "help": "training epochs [1]"}),
    "--vit_model": (
        SCRIPTS,
        {"choices": VIT_MODELS, "help": f"SAM encoder [{REFERENCE_VIT_MODEL}]"},
    ),
    "--modalities": (SCRIPTS, {"help": f"comma-separated [{REFERENCE_MODALITIES}]"}),
    "--resume": (
        SCRIPTS,
        {"type": _resume, "choices": (None, "last", "best"), "help": "last or best"},
    ),
    "--compute_efficiency": (
        SCRIPTS,
        {"type": _boolean, "default": False, "help": "print parameters and FLOPs, then exit"},
    ),
}


class ReferenceParser(argparse.ArgumentParser):
    """The reference script's parser; an unknown flag's error lists the supported ones."""

    def __init__(self, script: str) -> None:
        super().__init__(
            prog=f"python panosamic/evaluation/{script}.py",
            description=f"The reference's {script}.py flags, run as `panosamic {script}`.",
        )
        self.script = script
        for flag, (scripts, kwargs) in FLAGS.items():
            if script in scripts:
                required = script == "train" and flag == "--experiments_path"
                self.add_argument(flag, **kwargs, **({"required": True} if required else {}))

    @property
    def supported_flags(self) -> list[str]:
        return [flag for flag, (scripts, _) in FLAGS.items() if self.script in scripts]

    def parse_reference(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        args, unknown = self.parse_known_args(argv)
        if unknown:
            self.error(
                f"unrecognized arguments: {' '.join(unknown)}; {self.prog} supports "
                + ", ".join(self.supported_flags)
            )
        if self.script == "evaluate" and not (args.checkpoint or args.experiments_path):
            self.error("give --checkpoint (a published or exported model) or --experiments_path")
        if args.num_gpus < 1:
            self.error(f"--num_gpus must be at least 1, got {args.num_gpus}")
        return args


# ----------------------------------------------------------------------------- translation


def _given(*pairs: tuple[str, Any]) -> list[str]:
    """``--flag value`` for every pair whose value is not None."""
    return [word for flag, value in pairs if value is not None for word in (flag, str(value))]


def _experiment_run(args: argparse.Namespace) -> str:
    """The run directory the reference's evaluate.py reads ``model_best.pth`` from."""
    from ..modalities import normalize_modalities
    from ..model.config import load_config_json
    from ..train.runs import experiment_id, experiments_root, find_latest_run

    custom = "encoder" in load_config_json(args.config_path)
    vit = None if custom else (args.vit_model or REFERENCE_VIT_MODEL)
    modalities = normalize_modalities(args.modalities or REFERENCE_MODALITIES)
    exp_id = experiment_id(args.config_path, args.fold, vit, len(modalities))
    root = experiments_root(args.experiments_path, args.dataset)
    run = find_latest_run(root, exp_id)
    if run is None:
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(
            f"no training run '*_{exp_id}' under {root} (runs there: {present or 'none'}); "
            "train one with panosamic/evaluation/train.py and the same --config_path, --fold, "
            "--vit_model and --modalities, or name a checkpoint with --checkpoint"
        )
    return str(run)


def evaluate_argv(args: argparse.Namespace) -> list[str]:
    """``panosamic evaluate`` arguments of the reference's evaluate.py flags."""
    data = _given(
        ("--dataset", args.dataset),
        ("--dataset-path", args.dataset_path),
        ("--fold", args.fold),
        ("--batch-size", args.batch_size),
        ("--workers", args.workers_per_gpu),
        ("--sam-weights-path", args.sam_weights_path),
    )
    if not args.checkpoint:  # a training run: it brings its config, encoder and modalities
        return ["evaluate", _experiment_run(args), *data]
    model = _given(
        ("--checkpoint", args.checkpoint),
        ("--variant", args.subfolder),
        ("--config", args.config_path),
        ("--vit-model", args.vit_model),
        ("--modalities", args.modalities),
    )
    return ["evaluate", *model, *data]


def train_argv(args: argparse.Namespace) -> list[str]:
    """``panosamic train`` arguments of the reference's train.py flags (its defaults included,
    e.g. one epoch, so that a command left incomplete trains what the reference trains)."""
    return [
        "train",
        *_given(
            ("--dataset", args.dataset),
            ("--dataset-path", args.dataset_path),
            ("--config", args.config_path),
            ("--experiments-path", args.experiments_path),
            ("--sam-weights-path", args.sam_weights_path),
            ("--fold", args.fold),
            ("--batch-size", args.batch_size),
            ("--epochs", args.epochs),
            ("--vit-model", args.vit_model or REFERENCE_VIT_MODEL),
            ("--modalities", args.modalities or REFERENCE_MODALITIES),
            ("--workers", args.workers_per_gpu),
            ("--resume", args.resume),
        ),
    ]


def efficiency_argv(args: argparse.Namespace) -> list[str]:
    """``panosamic info`` arguments for ``--compute_efficiency``: the published variant named
    by ``--subfolder``, else the model the config, ViT size and modalities describe."""
    if getattr(args, "subfolder", None) in PUBLISHED_VARIANTS:
        return ["info", args.subfolder]
    return [
        "info",
        *_given(
            ("--config", args.config_path),
            ("--vit-model", args.vit_model or REFERENCE_VIT_MODEL),
            ("--modalities", args.modalities or REFERENCE_MODALITIES),
            ("--dataset", args.dataset),
        ),
    ]


def translate(script: str, args: argparse.Namespace) -> list[str]:
    """Our command line (without the program name) for a parsed reference command."""
    if args.compute_efficiency:
        return efficiency_argv(args)
    return evaluate_argv(args) if script == "evaluate" else train_argv(args)


# ----------------------------------------------------------------------------- running


def torchrun_command(argv: Sequence[str], processes: int) -> list[str]:
    """The command that starts ``processes`` copies of ``panosamic ARGV`` on this node."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
        "-m",
        "panosamic.cli",
        *argv,
    ]


def run(argv: Sequence[str], processes: int) -> int:
    """Run ``panosamic ARGV`` in this process (1) or in ``processes`` on this node; the status."""
    from . import main as panosamic_main

    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # as the reference
    if processes == 1:
        return panosamic_main(list(argv))
    return subprocess.call(torchrun_command(argv, processes))


def main(script: str, argv: Sequence[str] | None = None) -> int:
    """Parse the reference's flags of ``script`` ("evaluate" or "train") and run our command."""
    if script not in SCRIPTS:
        raise ValueError(f"script must be one of {SCRIPTS}, got {script!r}")
    parser = ReferenceParser(script)
    args = parser.parse_reference(argv)
    try:
        ours = translate(script, args)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    # already one of torchrun's (or srun's) processes, or the report: this process only
    single = ours[0] == "info" or "WORLD_SIZE" in os.environ
    processes = 1 if single else args.num_gpus
    if processes > 1:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() < processes:
            parser.error(
                f"--num_gpus {processes} starts one process per GPU, but this node has "
                f"{torch.cuda.device_count()}"
            )
    launcher = "panosamic" if processes == 1 else f"torchrun --nproc-per-node {processes} panosamic"
    print(f"{parser.prog} -> {launcher} {shlex.join(ours)}", file=sys.stderr, flush=True)
    return run(ours, processes)
