"""``panosamic evaluate``: mIoU / mAcc / per-class IoU of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

DATASET_CHOICES = ("stanford2d3ds", "matterport3d", "structured3d")
FOLD_PLACEHOLDER = "{fold}"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a Hub checkpoint or a training run on a dataset's held-out split",
        description=(
            "Evaluate PanoSAMic on the held-out split of one or more folds: mIoU, mAcc and "
            "per-class IoU from counts summed over the split (as the reference), optional "
            "instance refinement, edge metrics, per-frame mIoU and colour maps. MODEL is a "
            "Hub repo id or a local Hub-layout directory (with --subfolder), a checkpoint "
            "file, or a training run directory. '{fold}' in MODEL or --subfolder is replaced "
            "by each fold number. Several GPUs: torchrun --nproc-per-node N -m panosamic.cli "
            "evaluate ..."
        ),
    )
    p.add_argument(
        "model",
        nargs="+",
        metavar="MODEL",
        help="one model (may contain {fold}) or one per fold, in the order of --folds",
    )
    p.add_argument("--subfolder", help="variant folder inside a Hub repo / Hub-layout directory")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument(
        "--dataset", choices=DATASET_CHOICES, help="dataset (default: the run's dataset)"
    )
    p.add_argument(
        "--dataset-path", "--dataset_path", help="prepared dataset root (default: the run's)"
    )
    folds = p.add_mutually_exclusive_group()
    folds.add_argument("--fold", type=int, help="one fold (default: the run's fold, else 1)")
    folds.add_argument(
        "--folds", type=int, nargs="+", help="several folds, e.g. 1 2 3: each fold plus averages"
    )
    p.add_argument(
        "--config", help="JSON config of a Hub checkpoint that is not a standard variant"
    )
    p.add_argument("--vit-model", choices=("vit_b", "vit_l", "vit_h"), help="SAM encoder size")
    p.add_argument("--modalities", help="comma-separated modalities of a Hub checkpoint")
    p.add_argument(
        "--sam-weights-path",
        "--sam_weights_path",
        help="official SAM .pth file or directory (default: the run's, else the cache)",
    )
    p.add_argument(
        "--depth-inlier-ratio", type=float, help="as in training (default: the run's, else 0.995)"
    )
    p.add_argument(
        "--refine",
        action="store_true",
        help="refine the semantic map with SAM instance masks (majority vote per mask)",
    )
    p.add_argument(
        "--edge-side-fracs",
        type=float,
        nargs="*",
        default=[],
        help="edge metrics on the first/last fraction of columns per side, e.g. 0.25 0.15 0.05 "
        "(the paper's edge ratios 0.5 / 0.3 / 0.1)",
    )
    p.add_argument("--save-dir", help="write colour PNGs to <dir>/fold_<k>/<area>/<sample>.png")
    p.add_argument("--output", help="write the results as JSON (NaN written as null)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass [1]")
    p.add_argument("--workers", type=int, default=2, help="data-loading worker processes [2]")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if available)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="bf16 / fp16 run the network under autocast [fp32]",
    )
    p.set_defaults(func=_run)


# ---------------------------------------------------------------------- resolving
def _is_run_dir(source: str) -> bool:
    """A `panosamic train` run (not an export, which also carries a run_config.json)."""
    import json

    from ..train.runs import RUN_CONFIG_NAME, RUN_FORMAT

    path = Path(source).expanduser() / RUN_CONFIG_NAME
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == RUN_FORMAT
    except (json.JSONDecodeError, AttributeError):
        return False


def resolve_folds(args: argparse.Namespace) -> list[int]:
    """--folds, --fold, the runs' own folds, or [1]."""
    if args.folds:
        if len(set(args.folds)) != len(args.folds):
            raise ValueError(f"--folds lists a fold twice: {args.folds}")
        return list(args.folds)
    if args.fold is not None:
        return [args.fold]
    runs = [_run_settings(m) for m in args.model]
    if all(runs):
        return [r["fold"] for r in runs]
    return [1]


def resolve_sources(
    models: list[str], subfolder: str | None, folds: list[int]
) -> list[tuple[str, str | None]]:
    """(model, subfolder) per fold; ``{fold}`` placeholders filled in."""
    templated = any(FOLD_PLACEHOLDER in s for s in [*models, subfolder or ""])
    if len(models) == 1:
        if len(folds) > 1 and not templated:
            raise ValueError(
                f"{len(folds)} folds but one model without '{FOLD_PLACEHOLDER}': give one model "
                "per fold, or a placeholder, e.g. --subfolder stanford2d3ds-vith-rgb-fold{fold}"
            )
        models = models * len(folds)
    elif len(models) != len(folds):
        raise ValueError(
            f"{len(models)} models for {len(folds)} folds ({folds}): give one per fold"
        )
    return [
        (
            m.replace(FOLD_PLACEHOLDER, str(f)),
            subfolder.replace(FOLD_PLACEHOLDER, str(f)) if subfolder else None,
        )
        for m, f in zip(models, folds, strict=True)
    ]


def _run_settings(source: str) -> dict[str, Any]:
    """Dataset settings, SAM file and epoch of a training run, or of a checkpoint file in one.

    Empty for every other source (Hub ids, Hub-layout directories, exports).
    """
    import json

    from ..train.checkpoint import LAST_NAME
    from ..train.runs import HISTORY_NAME, read_run_config

    path = Path(source).expanduser()
    run_dir = path.parent if path.is_file() else path
    if not _is_run_dir(str(run_dir)):
        return {}
    run = read_run_config(run_dir)
    settings = {
        "dataset": run["dataset"]["name"],
        "dataset_path": run["dataset"]["path"],
        "fold": int(run["dataset"]["fold"]),
        "depth_inlier_ratio": run["dataset"].get("depth_inlier_ratio"),
        "sam_weights_path": run["training"].get("sam_weights_path"),
    }
    history = run_dir / HISTORY_NAME
    if history.is_file():
        records = json.loads(history.read_text())
        if records:
            last = path.is_file() and path.name == LAST_NAME
            settings["epoch"] = records[-1]["epoch"] if last else records[-1].get("best_epoch")
    return settings


def _pick(given: Any, run: dict[str, Any], key: str, default: Any = None) -> Any:
    return given if given is not None else run.get(key, default)


# ------------------------------------------------------------------------ command
def _evaluate_fold(args: argparse.Namespace, ctx: Any, fold: int, source: str, sub: str | None):
    from ..data import DATASET_CLASS_NAMES, build_dataset
    from ..weights import load_panosamic
    from .evaluator import evaluate_model

    run = _run_settings(source)
    if run and run["fold"] != fold:
        raise ValueError(f"run {source} was trained on fold {run['fold']}, not fold {fold}")
    dataset = _pick(args.dataset, run, "dataset")
    dataset_path = _pick(args.dataset_path, run, "dataset_path")
    if dataset is None or dataset_path is None:
        raise ValueError(f"{source}: give --dataset and --dataset-path (it is not a training run)")
    model = load_panosamic(
        source,
        subfolder=sub,
        config_path=args.config,
        vit_model=args.vit_model,
        modalities=args.modalities,
        num_classes=len(DATASET_CLASS_NAMES[dataset]),
        sam_weights_path=_pick(args.sam_weights_path, run, "sam_weights_path"),
        semantic_only=not args.refine,
        device=ctx.device,
        revision=args.revision,
        precision=args.precision,
    )
    split = build_dataset(
        dataset,
        dataset_path,
        fold=fold,
        split="eval",
        modalities=model.config.modalities,
        depth_inlier_ratio=_pick(args.depth_inlier_ratio, run, "depth_inlier_ratio") or 0.995,
    )
    if split.num_classes != model.config.num_classes:
        raise ValueError(
            f"the model predicts {model.config.num_classes} classes, {dataset} has {split.num_classes}"
        )
    save_dir = Path(args.save_dir) / f"fold_{fold}" if args.save_dir else None
    result = evaluate_model(
        model,
        split,
        ctx=ctx,
        fold=fold,
        batch_size=args.batch_size,
        workers=args.workers,
        edge_fractions=args.edge_side_fracs,
        refine=args.refine,
        save_dir=save_dir,
    )
    result.info = {"model": source, "subfolder": sub, "epoch": run.get("epoch"), "dataset": dataset}
    return result


def _print_summary(results: list[Any], average: dict[str, Any] | None) -> None:
    def pct(x: float) -> str:
        return "  n/a" if x is None or math.isnan(x) else f"{100 * x:6.2f}"

    print(f"{'fold':>14} {'mIoU %':>7} {'mAcc %':>7}  samples")
    for r in results:
        s = r.scores()
        print(f"{r.fold:>14} {pct(s.miou):>7} {pct(s.macc):>7}  {r.num_samples}")
    if average:
        for key in ("mean_of_folds", "pooled"):
            a = average[key]
            print(f"{key:>14} {pct(a['miou']):>7} {pct(a['macc']):>7}")


def _run(args: argparse.Namespace) -> int:
    from ..train.distributed import init_distributed, shutdown_distributed
    from .evaluator import average_report, fold_report, write_json
    from .metrics import normalize_edge_fractions

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    args.edge_side_fracs = normalize_edge_fractions(args.edge_side_fracs)
    folds = resolve_folds(args)
    sources = resolve_sources(args.model, args.subfolder, folds)
    ctx = init_distributed(args.device)
    try:
        results = [
            _evaluate_fold(args, ctx, fold, src, sub)
            for fold, (src, sub) in zip(folds, sources, strict=True)
        ]
    finally:
        shutdown_distributed(ctx)
    if not ctx.is_main:
        return 0
    average = average_report(results) if len(results) > 1 else None
    report: dict[str, Any] = {
        "format": "panosamic.evaluation/1",
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "split": "eval",
        "refine": bool(args.refine),
        "edge_side_fracs": args.edge_side_fracs,
        "class_names": list(results[0].class_names),
        "folds": {str(r.fold): fold_report(r) for r in results},
    }
    if average is not None:
        report["average"] = average
    _print_summary(results, average)
    if args.output:
        write_json(Path(args.output), report)
        print(f"results written to {args.output}")
    return 0
