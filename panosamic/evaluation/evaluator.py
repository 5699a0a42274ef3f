"""Evaluation of a model on a dataset split: metrics, edge metrics, frames, colour maps.

Works in one process or under torchrun: each process takes samples
``rank::world`` (nothing is dropped or repeated), the counts are summed and
the per-frame lists gathered on every process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..data.colors import colorize
from ..data.loader import make_loader, to_device
from ..instances.refine import refine_semantic_with_instances
from ..utils.atomic import save_image
from ..utils.distributed import DistContext, all_gather_objects, all_reduce_sum
from .metrics import SegmentationMeter, SegmentationScores, edge_key, scores_from_counts


@dataclass
class FoldResult:
    """Everything measured on one fold's split (counts already summed over processes)."""

    fold: int
    class_names: tuple[str, ...]
    counts: Tensor  # (3, K): intersection, output, target
    edge_counts: dict[float, Tensor] = field(default_factory=dict)
    frames: list[tuple[str, float]] = field(default_factory=list)
    num_samples: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # model source, epoch, ...

    def scores(self) -> SegmentationScores:
        return scores_from_counts(self.counts)


def refine_outputs(outputs: list[dict[str, Any]]) -> None:
    """Replace ``sem_preds`` by the instance-refined map wherever masks exist (in place)."""
    for out in outputs:
        masks = out.get("instance_masks") or []
        if masks:
            out["sem_preds"] = refine_semantic_with_instances(out["sem_preds"], masks)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    ctx: DistContext,
    fold: int = 1,
    batch_size: int = 1,
    workers: int = 0,
    edge_fractions: Sequence[float] = (),
    refine: bool = False,
    save_dir: Path | None = None,
    desc: str | None = None,
) -> FoldResult:
    """Run ``model`` over every sample of ``dataset`` and accumulate the metrics.

    Args:
        model: a PanoSAMic (eval mode is set here); built with
            ``semantic_only=False`` when ``refine``.
        dataset: a ``PanoramaDataset``-like split (``class_names``,
            ``sample_name(i)``, ``palette`` for the PNGs).
        save_dir: write ``<save_dir>/<area>/<sample>.png`` colour maps of the predictions.
    """
    model.eval()
    class_names = tuple(dataset.class_names)
    meter = SegmentationMeter(len(class_names), edge_fractions)
    loader, _ = make_loader(
        dataset, batch_size=batch_size, ctx=ctx, train=False, seed=0, num_workers=workers
    )
    modalities = tuple(model.config.modalities)
    frames: list[tuple[int, str, float]] = []
    bar = tqdm(
        loader, desc=desc or f"evaluate fold {fold}", disable=not ctx.is_main, dynamic_ncols=True
    )
    for data, labels, indices in bar:
        inputs = to_device(data, modalities, ctx.device)
        outputs = model(inputs)  # under the model's own precision
        if refine:
            refine_outputs(outputs)
        for out, lab, index in zip(outputs, labels, indices, strict=True):
            pred = out["sem_preds"].argmax(0).cpu()
            name = dataset.sample_name(index)
            counts = meter.update(pred, lab["semantics"])
            frames.append((index, name, scores_from_counts(counts).miou))
            if save_dir is not None:
                picture = Image.fromarray(colorize(pred.numpy(), dataset.palette))
                save_image(picture, Path(save_dir) / f"{name}.png")
    state = all_reduce_sum(meter.state_tensor(), ctx)
    meter.load_state_tensor(state)
    gathered = sorted(f for part in all_gather_objects(frames, ctx) for f in part)
    return FoldResult(
        fold=fold,
        class_names=class_names,
        counts=meter.counts,
        edge_counts=dict(meter.edge_counts),
        frames=[(name, miou) for _, name, miou in gathered],
        num_samples=len(gathered),
    )


# ------------------------------------------------------------------------ reports
def _scores_dict(scores: SegmentationScores, class_names: Sequence[str]) -> dict[str, Any]:
    return scores.to_dict(class_names)


def fold_report(result: FoldResult) -> dict[str, Any]:
    """The JSON section of one fold."""
    names = result.class_names
    inter, output, target = result.counts.tolist()
    union = [o + t - i for i, o, t in zip(inter, output, target, strict=True)]
    return {
        "fold": result.fold,
        **result.info,
        "num_samples": result.num_samples,
        **_scores_dict(result.scores(), names),
        "counts": {"intersection": inter, "union": union, "target": target},
        "frame_metrics": [{"sample": s, "miou": m} for s, m in result.frames],
        "edge_metrics": {
            edge_key(f): _scores_dict(scores_from_counts(c), names)
            for f, c in result.edge_counts.items()
        },
    }


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _mean_of_scores(scores: list[SegmentationScores], names: Sequence[str]) -> dict[str, Any]:
    """Each metric averaged over folds (NaN folds left out)."""
    per_class = [_nanmean([s.iou[c] for s in scores]) for c in range(len(names))]
    per_class_acc = [_nanmean([s.acc[c] for s in scores]) for c in range(len(names))]
    return {
        "miou": _nanmean([s.miou for s in scores]),
        "macc": _nanmean([s.macc for s in scores]),
        "iou_per_class": dict(zip(names, per_class, strict=True)),
        "acc_per_class": dict(zip(names, per_class_acc, strict=True)),
    }


def average_report(results: list[FoldResult]) -> dict[str, Any]:
    """Cross-fold averages, two ways.

    - ``mean_of_folds``: the mean of the folds' mIoU / mAcc / per-class IoU
      (every fold weighs the same; the usual "3-fold" number);
    - ``pooled``: metrics of the counts summed over all folds' splits (every
      pixel weighs the same).
    """
    names = results[0].class_names
    if any(r.class_names != names for r in results):
        raise ValueError("cannot average folds with different class lists")
    edge_fracs = list(results[0].edge_counts)
    report: dict[str, Any] = {
        "folds": [r.fold for r in results],
        "mean_of_folds": _mean_of_scores([r.scores() for r in results], names),
        "pooled": _scores_dict(scores_from_counts(sum(r.counts for r in results)), names),
    }
    if edge_fracs:
        report["mean_of_folds"]["edge_metrics"] = {
            edge_key(f): _mean_of_scores(
                [scores_from_counts(r.edge_counts[f]) for r in results], names
            )
            for f in edge_fracs
        }
        report["pooled"]["edge_metrics"] = {
            edge_key(f): _scores_dict(
                scores_from_counts(sum(r.edge_counts[f] for r in results)), names
            )
            for f in edge_fracs
        }
    return report
