"""Metrics on hand-made confusion cases; edge masks; fold averages; strict JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch

from panosamic.evaluation.evaluator import FoldResult, average_report, fold_report
from panosamic.evaluation.metrics import (
    SegmentationMeter,
    confusion_counts,
    edge_column_mask,
    edge_key,
    normalize_edge_fractions,
    scores_from_counts,
)
from panosamic.utils.atomic import json_safe

NAN = math.nan


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def test_counts_and_scores_by_hand() -> None:
    # K = 4; class 2 is predicted but absent from GT; class 3 is absent from both
    gt = _t([[0, 0, 1, 1], [1, -1, 0, 1]])
    pred = _t([[0, 1, 1, 1], [2, 3, 0, 1]])  # the 3 sits on an ignored pixel
    counts = confusion_counts(pred, gt, 4)
    assert counts.tolist() == [[2, 3, 0, 0], [2, 4, 1, 0], [3, 4, 0, 0]]
    s = scores_from_counts(counts)
    # IoU: 0: 2 / (2 + 3 - 2) = 2/3; 1: 3 / (4 + 4 - 3) = 3/5; 2: 0 / 1 = 0; 3: NaN (left out)
    assert s.iou[:3] == pytest.approx([2 / 3, 3 / 5, 0.0]) and math.isnan(s.iou[3])
    assert s.miou == pytest.approx((2 / 3 + 3 / 5 + 0) / 3)
    # Acc: 2/3, 3/4, NaN (absent from GT), NaN
    assert s.acc[:2] == pytest.approx([2 / 3, 3 / 4]) and math.isnan(s.acc[2])
    assert s.macc == pytest.approx((2 / 3 + 3 / 4) / 2)


def test_all_ignored_gives_nan_everywhere() -> None:
    counts = confusion_counts(_t([[1, 2]]), _t([[-1, -1]]), 3)
    assert counts.sum() == 0
    s = scores_from_counts(counts)
    assert math.isnan(s.miou) and math.isnan(s.macc) and all(math.isnan(v) for v in s.iou)


def test_counts_are_summed_over_the_split_not_averaged() -> None:
    meter = SegmentationMeter(2)
    meter.update(_t([[0, 0, 0, 0]]), _t([[0, 0, 0, 0]]), name="a")  # perfect, class 0 only
    meter.update(_t([[1, 1]]), _t([[0, 1]]), name="b")
    # pooled: class 0: I 4, U 5 -> 0.8; class 1: I 1, U 2 -> 0.5
    assert meter.scores().iou == pytest.approx([0.8, 0.5])
    assert meter.frames == [("a", 1.0), ("b", pytest.approx(0.25))]  # b: (0/1 + 1/2) / 2


def test_bad_labels_are_reported() -> None:
    with pytest.raises(ValueError, match="labels must be -1"):
        confusion_counts(_t([[0]]), _t([[5]]), 3)
    with pytest.raises(ValueError, match="differ"):
        confusion_counts(_t([[0, 1]]), _t([[0]]), 3)


def test_ties_go_to_the_first_class() -> None:
    meter = SegmentationMeter(3)
    meter.update_logits(torch.zeros(3, 1, 2), _t([[0, 0]]))
    assert meter.scores().iou[0] == 1.0


def test_edge_columns_and_keys() -> None:
    # Python's round: 2.5 -> 2 (half to even), 3.5 -> 4
    assert edge_column_mask(10, 0.25).tolist() == [True] * 2 + [False] * 6 + [True] * 2
    assert edge_column_mask(10, 0.35).sum() == 2 * 4
    mask = edge_column_mask(1024, 0.05)
    assert mask.sum() == 2 * 51 and mask[:51].all() and mask[-51:].all()
    assert edge_column_mask(8, 0.01).sum() == 2  # at least one column per side
    assert [edge_key(f) for f in (0.25, 0.15, 0.05)] == [
        "25pct_per_side",
        "15pct_per_side",
        "5pct_per_side",
    ]
    assert normalize_edge_fractions([0.05, 0.25, 0.05]) == [0.25, 0.05]
    with pytest.raises(ValueError, match="strictly between 0 and"):
        normalize_edge_fractions([0.5])


def test_edge_metrics_only_count_the_border_columns() -> None:
    meter = SegmentationMeter(2, edge_fractions=[0.25])
    gt = _t([[0, 0, 1, 1, 1, 1, 0, 0]])
    pred = _t([[0, 1, 1, 1, 0, 0, 0, 0]])  # the middle errors are outside the edges
    meter.update(pred, gt)
    edge = meter.edge_scores()[0.25]
    # edge columns 0, 1, 6, 7: gt 0 0 0 0, pred 0 1 0 0
    assert edge.iou == pytest.approx([3 / 4, 0.0])


def _fold(fold: int, counts: list[list[int]]) -> FoldResult:
    return FoldResult(fold=fold, class_names=("a", "b"), counts=torch.tensor(counts), num_samples=1)


def test_fold_average_mean_of_folds_and_pooled() -> None:
    f1 = _fold(1, [[1, 0], [1, 0], [1, 0]])  # a: 1/1; b absent -> NaN; mIoU 1.0
    f2 = _fold(2, [[1, 1], [3, 1], [1, 3]])  # a: 1/3, b: 1/3; mIoU 1/3
    report = average_report([f1, f2])
    assert report["mean_of_folds"]["miou"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert report["mean_of_folds"]["iou_per_class"] == {
        "a": pytest.approx(2 / 3),
        "b": pytest.approx(1 / 3),
    }
    # pooled: I (2, 1), O (4, 1), T (2, 3) -> a: 2 / 4, b: 1 / 3
    assert report["pooled"]["iou_per_class"] == {"a": pytest.approx(0.5), "b": pytest.approx(1 / 3)}


def test_reports_are_strict_json_with_null_for_nan() -> None:
    result = _fold(1, [[1, 0], [1, 0], [1, 0]])
    result.frames = [("area/x", NAN)]
    text = json.dumps(json_safe(fold_report(result)), allow_nan=False)
    data = json.loads(text)
    assert data["iou_per_class"]["b"] is None
    assert data["frame_metrics"] == [{"sample": "area/x", "miou": None}]
    assert data["counts"] == {"intersection": [1, 0], "union": [1, 0], "target": [1, 0]}
