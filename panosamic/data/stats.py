"""Depth histograms (written by the preparation) and the depth threshold d_t derived from them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .catalog import DEPTH_INLIER_RATIOS, DatasetInfo


def depth_histogram(raw_depth: np.ndarray, mask: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """Counts of valid metric depths in the dataset's bins: (bins,) int64."""
    metres = info.depth_metres(raw_depth[mask])
    counts, _ = np.histogram(metres, bins=info.histogram_bins, range=(0.0, info.histogram_max))
    return counts.astype(np.int64)


def histogram_edges(info: DatasetInfo) -> list[float]:
    """Bin edges as stored in ``cache_area_depth_statistics.json`` (rounded to 0.1)."""
    edges = np.histogram_bin_edges([], bins=info.histogram_bins, range=(0.0, info.histogram_max))
    return [float(e) for e in np.round(edges, 1)]


def statistics_entry(counts: np.ndarray, info: DatasetInfo) -> list:
    """One area's value in ``cache_area_depth_statistics.json``: [counts, edges]."""
    return [[int(c) for c in counts], histogram_edges(info)]


def depth_thresholds(counts: Sequence[int] | np.ndarray, edges: Sequence[float]) -> list[float]:
    """d_t for every ratio of :data:`DEPTH_INLIER_RATIOS`.

    For ratio r the threshold is the left edge of the first bin whose cumulative
    count reaches r times the total, i.e. the r-quantile floored to the bin width.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if len(edges) != len(counts) + 1:
        raise ValueError(
            f"{len(counts)} histogram bins need {len(counts) + 1} edges, got {len(edges)}"
        )
    cumulative = np.cumsum(counts)
    total = cumulative[-1] if len(cumulative) else 0.0
    if total <= 0:
        raise ValueError("the depth histogram is empty: no valid depth pixel in the training split")
    return [float(edges[int(np.argmax(cumulative >= r * total))]) for r in DEPTH_INLIER_RATIOS]


def sum_area_histograms(
    statistics: Mapping[str, Sequence], areas: Iterable[str]
) -> tuple[np.ndarray, list[float]]:
    """Sum the ``[counts, edges]`` entries of ``areas``; all must share their bin edges."""
    total: np.ndarray | None = None
    edges: list[float] | None = None
    for area in areas:
        if area not in statistics:
            raise ValueError(
                f"cache_area_depth_statistics.json has no entry for {area!r}; "
                "re-run `panosamic prepare` (it writes the statistics at the end)"
            )
        counts, area_edges = statistics[area]
        if edges is None:
            total, edges = np.asarray(counts, dtype=np.int64), list(area_edges)
        elif list(area_edges) != edges:
            raise ValueError(
                f"depth histogram of {area!r} uses different bins from the other areas"
            )
        else:
            total = total + np.asarray(counts, dtype=np.int64)
    if total is None or edges is None:
        raise ValueError("no area to take depth statistics from")
    return total, edges


def depth_threshold_of(metres: np.ndarray, ratio: float = 0.995, bin_width: float = 0.1) -> float:
    """d_t of one depth map by the training rule: the ``ratio`` quantile of its depths (valid,
    in metres) floored to ``bin_width``; for a capture whose d_t nobody recorded."""
    values = np.asarray(metres, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no valid depth pixel to take d_t from")
    bins = max(1, int(np.ceil(values.max() / bin_width)) + 1)
    counts, edges = np.histogram(values, bins=bins, range=(0.0, bins * bin_width))
    cumulative = np.cumsum(counts)
    return float(np.round(edges[int(np.argmax(cumulative >= ratio * cumulative[-1]))], 1))
