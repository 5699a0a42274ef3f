"""Labelled point clouds from a panorama with depth, voxel downsampling, rigid transforms.

Every pixel with valid depth d looks along the unit ray r of
:func:`panosamic.data.sphere.pixel_directions` and becomes the point ``d * r``
in the camera frame the normals use (metres; x forward at the image centre,
y left, z up). A point carries the pixel's colour, class, instance (-1 for
none) and confidence (the semantic head's top softmax probability, before any
refinement by instance masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.sphere import pixel_angles


@dataclass
class LabelledCloud:
    """P points: ``xyz`` (P, 3) float32 metres, ``rgb`` (P, 3) uint8, ``label`` (P,) int32
    (-1 = none), ``instance`` (P,) int32 (-1 = none), ``confidence`` (P,) float32."""

    xyz: np.ndarray
    rgb: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)


COMPACT_ROWS = 2_000_000  # VoxelGrid folds its parts once they hold this many more rows


def instance_index_map(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 index of the instance mask covering each pixel, -1 for none; with masks
    ordered largest first, a later (smaller) mask wins where they overlap, as the refinement's."""
    out = np.full(shape, -1, dtype=np.int32)
    for k, mask in enumerate(masks):
        out[np.asarray(mask, dtype=bool)] = k
    return out


def cloud_from_panorama(
    metres: np.ndarray,
    valid: np.ndarray,
    rgb: np.ndarray,
    labels: np.ndarray,
    *,
    instances: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    stride: int = 1,
) -> LabelledCloud:
    """The points of every ``stride``-th pixel (both axes) with valid depth.

    Args:
        metres, valid: (H, W) depth along the ray and where it is valid.
        rgb: (H, W, 3) uint8; labels: (H, W) class indices (-1 = none).
        instances: (H, W) instance index, -1 for none (default: all -1).
        confidence: (H, W) top class probability (default: NaN, unknown).
    """
    if stride < 1:
        raise ValueError(f"the stride must be at least 1, got {stride}")
    h, w = metres.shape
    named = {"rgb": rgb, "labels": labels, "valid": valid, "instances": instances,
             "confidence": confidence}  # fmt: skip
    for name, array in ((n, a) for n, a in named.items() if a is not None):
        if array.shape[:2] != (h, w):
            raise ValueError(f"{name} {array.shape[:2]} and depth {(h, w)} differ in size")
    keep = np.asarray(valid, dtype=bool) & np.isfinite(metres) & (metres > 0)
    if stride > 1:
        grid = np.zeros((h, w), dtype=bool)
        grid[::stride, ::stride] = True
        keep &= grid
    # float32; boolean picks keep the pixel order (row by row) without index or (H, W, 3) arrays
    lon, lat = pixel_angles(h, w)
    cos_lat, sin_lat = np.cos(lat).astype(np.float32), np.sin(lat).astype(np.float32)
    cos_lon, sin_lon = np.cos(lon).astype(np.float32), np.sin(lon).astype(np.float32)
    depth = metres[keep].astype(np.float32, copy=False)
    xyz = np.empty((len(depth), 3), dtype=np.float32)
    xyz[:, 0] = np.multiply.outer(cos_lat, cos_lon)[keep] * depth
    xyz[:, 1] = np.multiply.outer(cos_lat, -sin_lon)[keep] * depth
    xyz[:, 2] = np.repeat(sin_lat, keep.sum(axis=1)) * depth
    colour = np.ascontiguousarray(rgb, dtype=np.uint8).view(np.dtype((np.void, 3)))[..., 0]

    def picked(array: np.ndarray | None, fill: float, dtype: str) -> np.ndarray:
        if array is None:
            return np.full(len(depth), fill, dtype=dtype)
        return np.asarray(array[keep], dtype=dtype)

    return LabelledCloud(
        xyz,
        colour[keep].view(np.uint8).reshape(-1, 3),
        picked(labels, -1, "int32"),
        picked(instances, -1, "int32"),
        picked(confidence, np.nan, "float32"),
    )


def spread_indices(count: int, at_most: int) -> np.ndarray:
    """Indices of at most ``at_most`` (>= 2) of ``count`` items, evenly spread, first and last
    kept."""
    if count <= at_most:
        return np.arange(count)
    return np.linspace(0, count - 1, at_most).astype(np.int64)


def transform(cloud: LabelledCloud, pose: np.ndarray) -> LabelledCloud:
    """The cloud moved by a (4, 4) rigid transform (camera-to-world)."""
    xyz = cloud.xyz.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
    return LabelledCloud(
        xyz.astype(np.float32), cloud.rgb, cloud.label, cloud.instance, cloud.confidence
    )


def voxel_downsample(cloud: LabelledCloud, voxel: float) -> LabelledCloud:
    """One point per occupied ``voxel``-sized cube (see :class:`VoxelGrid`)."""
    grid = VoxelGrid(voxel)
    grid.add(cloud)
    return grid.result()


class VoxelGrid:
    """Clouds reduced to one point per occupied cube of side ``voxel``, cloud by cloud.

    Each cube gets the mean position, colour and confidence of its points, the
    majority class (ties to the lowest; none only where there is nothing else)
    and, among the points of that class, the majority instance. Only sums per
    (cube, class, instance) are kept, folded together as they grow, so memory
    follows the size of the merged cloud, not the number of clouds added.
    ``keep_instances=False`` sets every instance to -1 (the instance indices of
    different panoramas do not match).
    """

    def __init__(self, voxel: float, keep_instances: bool = True) -> None:
        if not voxel > 0:
            raise ValueError(f"the voxel size must be positive, got {voxel}")
        self.voxel = voxel
        self.keep_instances = keep_instances
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._rows = self._compacted = 0  # rows held; rows after the last compaction

    def add(self, cloud: LabelledCloud) -> None:
        """Aggregate a cloud: per (cube, class, instance) its count and sums."""
        if len(cloud) == 0:
            return
        keys = np.floor(cloud.xyz / self.voxel).astype(np.int64)
        instance = cloud.instance if self.keep_instances else np.full(len(cloud), -1, np.int32)
        rows = np.column_stack([keys, cloud.label, instance])
        unique, group, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        group = group.ravel()
        sums = np.zeros((len(unique), 7))
        values = np.column_stack([cloud.xyz, cloud.rgb, np.nan_to_num(cloud.confidence, nan=0.0)])
        np.add.at(sums, group, values.astype(np.float64))
        known = np.zeros(len(unique))
        np.add.at(known, group, np.isfinite(cloud.confidence).astype(np.float64))
        self._parts.append((unique, counts.astype(np.float64), sums, known))
        self._rows += len(unique)
        if self._rows > 2 * self._compacted + COMPACT_ROWS:
            self._compact()

    def _compact(self) -> None:
        """Fold the parts into one (a capture's overlapping clouds share most of their cubes)."""
        rows = np.concatenate([p[0] for p in self._parts])
        unique, group = np.unique(rows, axis=0, return_inverse=True)
        group = group.ravel()
        merged = [unique]
        for k in (1, 2, 3):
            values = np.concatenate([p[k] for p in self._parts])
            total = np.zeros((len(unique), *values.shape[1:]))
            np.add.at(total, group, values)
            merged.append(total)
        self._parts = [tuple(merged)]
        self._rows = self._compacted = len(unique)

    def result(self) -> LabelledCloud:
        """The reduced cloud of everything added."""
        if not self._parts:
            empty = np.zeros(0)
            return LabelledCloud(empty.reshape(0, 3).astype(np.float32), empty.reshape(0, 3).astype(np.uint8),
                                 empty.astype(np.int32), empty.astype(np.int32), empty.astype(np.float32))  # fmt: skip
        rows = np.concatenate([p[0] for p in self._parts])
        counts = np.concatenate([p[1] for p in self._parts])
        sums = np.concatenate([p[2] for p in self._parts])
        known = np.concatenate([p[3] for p in self._parts])
        cubes, cube = np.unique(rows[:, :3], axis=0, return_inverse=True)
        cube = cube.ravel()
        n = len(cubes)
        total = np.zeros(n)
        np.add.at(total, cube, counts)
        summed = np.zeros((n, 7))
        np.add.at(summed, cube, sums)
        known_total = np.zeros(n)
        np.add.at(known_total, cube, known)
        mean = summed / total[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            confidence = np.where(known_total > 0, summed[:, 6] / known_total, np.nan)
        label = weighted_majority(cube, rows[:, 3], counts, n)
        of_label = rows[:, 3] == label[cube]  # the instance is voted among the class's points
        instance = weighted_majority(cube[of_label], rows[of_label, 4], counts[of_label], n)
        return LabelledCloud(
            mean[:, :3].astype(np.float32),
            np.clip(np.rint(mean[:, 3:6]), 0, 255).astype(np.uint8),
            label,
            instance,
            confidence.astype(np.float32),
        )


def weighted_majority(
    group: np.ndarray, values: np.ndarray, weights: np.ndarray, groups: int
) -> np.ndarray:
    """(groups,) int32: per group the value of the largest total weight (the lowest on ties);
    -1 (none) only where a group has nothing else."""
    pairs, pair = np.unique(np.column_stack([group, values]), axis=0, return_inverse=True)
    totals = np.zeros(len(pairs))
    np.add.at(totals, pair.ravel(), weights)
    best = np.lexsort((pairs[:, 1], -totals, pairs[:, 1] < 0, pairs[:, 0]))
    _, first = np.unique(pairs[best, 0], return_index=True)
    out = np.full(groups, -1, dtype=np.int32)
    out[pairs[best, 0][first]] = pairs[best, 1][first]
    return out
