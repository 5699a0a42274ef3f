"""``panosamic train``: train PanoSAMic with the reference's protocol (also under torchrun)."""

from __future__ import annotations

import argparse
from typing import Any

DATASET_CHOICES = ("stanford2d3ds", "matterport3d", "structured3d")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the fusion and decoder on a prepared dataset (torchrun for several GPUs)",
        description=(
            "Train PanoSAMic's fusion and decoder on a frozen SAM encoder with the "
            "reference's protocol (Ranger21, LR warm-up / warm-down, Jaccard or scheduled "
            "CE/Jaccard loss, best epoch on the held-out split). Several GPUs or nodes: "
            "torchrun --nproc-per-node N -m panosamic.cli train ... "
            "When resuming, options left out are taken from the run."
        ),
    )
    data = p.add_argument_group("data and model")
    data.add_argument("--dataset", choices=DATASET_CHOICES, help="dataset name")
    data.add_argument("--dataset-path", "--dataset_path", help="prepared dataset root")
    data.add_argument(
        "--config",
        "--config-path",
        "--config_path",
        help="JSON config: a file, or a packaged name such as config/config_stanford2d3ds_dv.json",
    )
    data.add_argument(
        "--fold", type=int, help="fold (Stanford 1-3; Matterport/Structured3D 1-2) [1]"
    )
    data.add_argument(
        "--vit-model",
        "--vit_model",
        choices=("vit_b", "vit_l", "vit_h"),
        help="SAM encoder size (ignored if the config has an 'encoder' section) [vit_h]",
    )
    data.add_argument(
        "--modalities", help="comma-separated: image[,depth][,normals] [image,depth,normals]"
    )
    data.add_argument(
        "--channel-attention",
        choices=("config", "eca", "fc"),
        help="channel attention: as the config says, ECA (the published checkpoints, the "
        "paper's parameter counts) or the fully connected MLP (the reference's JSON configs) "
        "[config]",
    )
    data.add_argument(
        "--depth-inlier-ratio",
        type=float,
        help="depth threshold d_t = this quantile of training depths [0.995]",
    )
    data.add_argument(
        "--no-augment",
        dest="augment",
        action="store_const",
        const=False,
        help="no flip / roll / colour permutation on the training split",
    )
    data.add_argument(
        "--sam-weights-path",
        "--sam_weights_path",
        help="official SAM .pth (file, or directory searched for *_<vit>_*.pth); default: cache",
    )
    data.add_argument(
        "--random-sam",
        action="store_true",
        default=None,
        help="randomly initialised frozen SAM encoder (tests / tiny configs only; "
        "implies full checkpoints)",
    )

    recipe = p.add_argument_group("training recipe")
    recipe.add_argument("--epochs", type=int, help="epochs [50, as in the paper; reference: 1]")
    recipe.add_argument("--batch-size", "--batch_size", type=int, help="batch per process [1]")
    recipe.add_argument(
        "--grad-accum",
        type=int,
        help="micro-batches per optimizer step (gradient accumulation) [1]",
    )
    recipe.add_argument(
        "--lr-scaling",
        choices=("reference", "none"),
        help="reference: max_lr x total batch / 4 (total = processes x batch x accumulation); "
        "none: the config's max_lr as is [reference]",
    )
    recipe.add_argument(
        "--select-on",
        choices=("heldout", "last", "none"),
        help="model_best.pth = best mIoU on the held-out split (reference) / the last epoch "
        "(still validated) / the last epoch without validation [heldout]",
    )
    recipe.add_argument(
        "--seed", type=int, help="seed of initialisation, order and augmentation [0]"
    )
    recipe.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic kernels (bit-exact resume on CPU; close on GPU)",
    )
    recipe.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        default=None,
        help="recompute each fusion block in the backward pass: less memory, same result, slower",
    )
    recipe.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        help="bf16 / fp16: the forward under autocast, losses in float32, fp16 with a loss "
        "scaler (reference: fp32) [fp32]",
    )

    run = p.add_argument_group("run directory, checkpoints, resume")
    run.add_argument(
        "--experiments-path",
        "--experiments_path",
        help="root of the run directories (<root>/<dataset>/<time>_<ID>) [experiments]",
    )
    run.add_argument("--run-dir", help="use this run directory instead of a new timestamped one")
    run.add_argument(
        "--resume",
        choices=("last", "best"),
        help="continue --run-dir (or the latest run of this experiment ID) from model_<last|best>.pth",
    )
    run.add_argument(
        "--full-checkpoints",
        action="store_true",
        default=None,
        help="store every tensor (the reference's layout) instead of only the trainable ones",
    )
    run.add_argument(
        "--checkpoint-every",
        type=int,
        help="also write model_last.pth every N optimizer steps inside an epoch (0: epoch ends) [0]",
    )
    run.add_argument(
        "--delete-last",
        dest="keep_last",
        action="store_const",
        const=False,
        help="delete model_last.pth at the end, as the reference does",
    )
    run.add_argument("--log-every", type=int, help="TensorBoard step scalars every N steps [5]")
    run.add_argument("--workers", type=int, help="data-loading worker processes per process [2]")
    run.add_argument("--device", help="cpu, cuda, cuda:1 ... [cuda:LOCAL_RANK if available]")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .options import option_names
    from .trainer import resolve_options, run_training

    values = {name: getattr(args, name, None) for name in option_names()}
    options = resolve_options(values)
    run_training(options)
    return 0
