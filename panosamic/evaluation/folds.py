"""The evaluation protocol over folds: which model each fold gets, its settings, the report.

A model is a Hub repo id or Hub-layout folder (with a variant), a checkpoint
file, an export or a training run; a run brings its own dataset, fold, SAM
file and depth settings. ``{fold}`` in a model or variant name is replaced by
each fold number, so the paper's 3-fold protocol is one call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hub.locate import HISTORY_NAME, LAST_NAME, RUN_CONFIG_NAME, RUN_FORMAT
from ..utils.distributed import DistContext
from .evaluator import FoldResult, average_report, evaluate_model, fold_report

FOLD_PLACEHOLDER = "{fold}"
REPORT_FORMAT = "panosamic.evaluation/1"


@dataclass(frozen=True)
class EvaluationSettings:
    """What every fold is evaluated with (``None``: the run's own value, else the default)."""

    dataset: str | None = None
    dataset_path: str | None = None
    config: str | None = None
    vit_model: str | None = None
    modalities: str | None = None
    sam_weights_path: str | None = None
    revision: str | None = None
    depth_inlier_ratio: float | None = None
    refine: bool = False
    edge_side_fracs: Sequence[float] = field(default_factory=tuple)
    save_dir: str | None = None
    batch_size: int = 1
    workers: int = 2
    precision: str = "fp32"


def run_settings(source: str) -> dict[str, Any]:
    """Dataset settings, SAM file and epoch of a training run, or of a checkpoint file in one.

    Empty for every other source (Hub ids, Hub-layout directories, exports).
    """
    path = Path(source).expanduser()
    run_dir = path.parent if path.is_file() else path
    config = run_dir / RUN_CONFIG_NAME
    if not config.is_file():
        return {}
    try:
        run = json.loads(config.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config} is not valid JSON: {err}") from err
    if not isinstance(run, dict) or run.get("format") != RUN_FORMAT:
        return {}  # an export, which carries a run_config.json of its own kind
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


def resolve_folds(
    models: Sequence[str], folds: Sequence[int] | None, fold: int | None
) -> list[int]:
    """The folds to evaluate: ``folds``, ``fold``, the runs' own folds, or [1]."""
    if folds:
        if len(set(folds)) != len(folds):
            raise ValueError(f"--folds lists a fold twice: {list(folds)}")
        return list(folds)
    if fold is not None:
        return [fold]
    runs = [run_settings(m) for m in models]
    if all(runs):
        return [r["fold"] for r in runs]
    return [1]


def resolve_sources(
    models: Sequence[str], subfolder: str | None, folds: Sequence[int]
) -> list[tuple[str, str | None]]:
    """(model, subfolder) per fold, ``{fold}`` placeholders filled in."""
    templated = any(FOLD_PLACEHOLDER in s for s in [*models, subfolder or ""])
    if len(models) == 1:
        if len(folds) > 1 and not templated:
            raise ValueError(
                f"{len(folds)} folds but one model without '{FOLD_PLACEHOLDER}': give one model "
                "per fold, or a placeholder, e.g. --variant stanford2d3ds-vith-rgb-fold{fold}"
            )
        models = list(models) * len(folds)
    elif len(models) != len(folds):
        raise ValueError(
            f"{len(models)} models for {len(folds)} folds ({list(folds)}): give one per fold"
        )
    return [
        (
            m.replace(FOLD_PLACEHOLDER, str(f)),
            subfolder.replace(FOLD_PLACEHOLDER, str(f)) if subfolder else None,
        )
        for m, f in zip(models, folds, strict=True)
    ]


def _pick(given: Any, run: dict[str, Any], key: str, default: Any = None) -> Any:
    return given if given is not None else run.get(key, default)


def evaluate_fold(
    source: str, subfolder: str | None, fold: int, settings: EvaluationSettings, ctx: DistContext
) -> FoldResult:
    """Load one fold's model and evaluate it on that fold's held-out split."""
    from ..data import DATASET_CLASS_NAMES, build_dataset
    from ..model import PanoSAMic

    run = run_settings(source)
    if run and run["fold"] != fold:
        raise ValueError(f"run {source} was trained on fold {run['fold']}, not fold {fold}")
    dataset = _pick(settings.dataset, run, "dataset")
    dataset_path = _pick(settings.dataset_path, run, "dataset_path")
    if dataset is None or dataset_path is None:
        raise ValueError(f"{source}: give --dataset and --dataset-path (it is not a training run)")
    model = PanoSAMic.from_pretrained_panosamic(
        source,
        subfolder=subfolder,
        config_path=settings.config,
        vit_model=settings.vit_model,
        modalities=settings.modalities,
        num_classes=len(DATASET_CLASS_NAMES[dataset]),
        sam_weights_path=_pick(settings.sam_weights_path, run, "sam_weights_path"),
        semantic_only=not settings.refine,
        device=ctx.device,
        revision=settings.revision,
        precision=settings.precision,
    )
    split = build_dataset(
        dataset,
        dataset_path,
        fold=fold,
        split="eval",
        modalities=model.config.modalities,
        depth_inlier_ratio=_pick(settings.depth_inlier_ratio, run, "depth_inlier_ratio") or 0.995,
    )
    if split.num_classes != model.config.num_classes:
        raise ValueError(
            f"the model predicts {model.config.num_classes} classes, {dataset} has {split.num_classes}"
        )
    save_dir = Path(settings.save_dir) / f"fold_{fold}" if settings.save_dir else None
    result = evaluate_model(
        model,
        split,
        ctx=ctx,
        fold=fold,
        batch_size=settings.batch_size,
        workers=settings.workers,
        edge_fractions=settings.edge_side_fracs,
        refine=settings.refine,
        save_dir=save_dir,
    )
    result.info = {
        "model": source,
        "subfolder": subfolder,
        "epoch": run.get("epoch"),
        "dataset": dataset,
    }
    return result


def evaluation_report(
    results: list[FoldResult], settings: EvaluationSettings, ctx: DistContext
) -> dict[str, Any]:
    """The JSON report: every fold and, with several, both cross-fold averages."""
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "device": str(ctx.device),
        "world_size": ctx.world_size,
        "split": "eval",
        "refine": bool(settings.refine),
        "edge_side_fracs": list(settings.edge_side_fracs),
        "class_names": list(results[0].class_names),
        "folds": {str(r.fold): fold_report(r) for r in results},
    }
    if len(results) > 1:
        report["average"] = average_report(results)
    return report


def format_summary(report: dict[str, Any]) -> str:
    """A table of mIoU and mAcc per fold (and the averages) from :func:`evaluation_report`."""

    def pct(x: float | None) -> str:
        return "  n/a" if x is None or math.isnan(x) else f"{100 * x:6.2f}"

    lines = [f"{'fold':>14} {'mIoU %':>7} {'mAcc %':>7}  samples"]
    for fold, r in report["folds"].items():
        lines.append(f"{fold:>14} {pct(r['miou']):>7} {pct(r['macc']):>7}  {r['num_samples']}")
    for key in ("mean_of_folds", "pooled"):
        if "average" in report:
            a = report["average"][key]
            lines.append(f"{key:>14} {pct(a['miou']):>7} {pct(a['macc']):>7}")
    return "\n".join(lines)
