"""``panosamic evaluate``: mIoU / mAcc / per-class IoU of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a Hub checkpoint or a training run on a dataset's held-out split",
        description=(
            "Evaluate PanoSAMic on the held-out split of one or more folds: mIoU, mAcc and "
            "per-class IoU from counts summed over the split (as the reference), optional "
            "instance refinement, edge metrics, per-frame mIoU and colour maps. MODEL is a "
            "Hub repo id or a local Hub-layout directory (with --variant), a checkpoint "
            "file, an export or a training run directory. '{fold}' in MODEL or --variant is "
            "replaced by each fold number. Several GPUs: torchrun --nproc-per-node N -m "
            "panosamic.cli evaluate ..."
        ),
    )
    p.add_argument(
        "model",
        nargs="*",
        metavar="MODEL",
        help="one model (may contain {fold}) or one per fold, in the order of --folds "
        "(or give it with --checkpoint)",
    )
    model = options.add_model_source(p)
    options.add(model, "modalities", more="(default: read off the checkpoint)")
    data = p.add_argument_group("data")
    options.add(data, "dataset", more="(default: the run's)")
    options.add(data, "dataset_path", more="(default: the run's)")
    folds = data.add_mutually_exclusive_group()
    folds.add_argument(
        "--fold",
        type=int,
        help="one fold (default: the run's fold, else 1; ToF-360 has fold 1 only)",
    )
    folds.add_argument(
        "--folds", type=int, nargs="+", help="several folds, e.g. 1 2 3: each fold plus averages"
    )
    data.add_argument(
        "--depth-inlier-ratio", type=float, help="as in training (default: the run's, else 0.995)"
    )
    what = p.add_argument_group("evaluation")
    what.add_argument(
        "--refine",
        action="store_true",
        help="refine the semantic map with SAM instance masks (majority vote per mask)",
    )
    what.add_argument(
        "--edge-side-fracs",
        type=float,
        nargs="*",
        default=[],
        help="edge metrics on the first/last fraction of columns per side, e.g. 0.25 0.15 0.05 "
        "(the paper's edge ratios 0.5 / 0.3 / 0.1)",
    )
    what.add_argument("--save-dir", help="write colour PNGs to <dir>/fold_<k>/<area>/<sample>.png")
    what.add_argument("--output", help="write the results as JSON (NaN written as null)")
    run = p.add_argument_group("runtime")
    run.add_argument("--batch-size", type=int, default=1, help="images per forward pass [1]")
    options.add(run, "workers", default=2, more="for data loading [2]")
    options.add(run, "device", more="(default: cuda:LOCAL_RANK when CUDA is there, else cpu)")
    options.add(run, "precision", default="fp32", more="[fp32]")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..evaluation.folds import (
        EvaluationSettings,
        evaluate_fold,
        evaluation_report,
        format_summary,
        resolve_folds,
        resolve_sources,
    )
    from ..evaluation.metrics import normalize_edge_fractions
    from ..utils.atomic import write_json
    from ..utils.distributed import init_distributed, shutdown_distributed

    models = [*args.model, *([args.checkpoint] if args.checkpoint else [])]
    if not models:
        raise ValueError("name the model: MODEL, or --checkpoint")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    settings = EvaluationSettings(
        dataset=args.dataset,
        dataset_path=args.dataset_path,
        config=args.config,
        vit_model=args.vit_model,
        modalities=args.modalities,
        sam_weights_path=args.sam_weights_path,
        revision=args.revision,
        depth_inlier_ratio=args.depth_inlier_ratio,
        refine=args.refine,
        edge_side_fracs=normalize_edge_fractions(args.edge_side_fracs),
        save_dir=args.save_dir,
        batch_size=args.batch_size,
        workers=args.workers,
        precision=args.precision,
    )
    folds = resolve_folds(models, args.folds, args.fold)
    sources = resolve_sources(models, args.variant, folds)
    ctx = init_distributed(args.device)
    try:
        results = [
            evaluate_fold(source, variant, fold, settings, ctx)
            for fold, (source, variant) in zip(folds, sources, strict=True)
        ]
    finally:
        shutdown_distributed(ctx)
    if not ctx.is_main:
        return 0
    report = evaluation_report(results, settings, ctx)
    print(format_summary(report))
    if args.output:
        write_json(Path(args.output), report)
        print(f"results written to {args.output}")
    return 0
