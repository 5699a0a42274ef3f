"""The clouds of a whole run or prepared dataset, written file by file, and merged on the way.

Each panorama's cloud is written as soon as it is built and, with poses, added
to a :class:`~.points.VoxelGrid` in the world frame, so a capture of hundreds
of panoramas never holds more than one full cloud in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from .build import NoDepth, cloud_of_output, cloud_of_sample
from .ply import write_ply
from .points import LabelledCloud, VoxelGrid, transform, voxel_downsample
from .poses import PoseError, match_poses, read_poses, stanford_pose

CLOUD_NAME = "pointcloud.ply"


@dataclass
class CloudRun:
    """What was written, what had no depth and what failed (name, why), and the merged cloud."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    merged: LabelledCloud | None = None


def write_clouds(
    items: Sequence[tuple[str, Callable[[], LabelledCloud], Path]],
    *,
    voxel: float | None = None,
    poses: Mapping[str, np.ndarray] | None = None,
    merge_voxel: float = 0.05,
) -> CloudRun:
    """Build and write every ``(name, build, target)``; merge into the world frame with ``poses``.

    Every panorama's pose is found before any file is written (:func:`.poses.match_poses`).
    """
    for what, value in (("voxel", voxel), ("merge voxel", merge_voxel)):
        if value is not None and not value > 0:
            raise ValueError(f"the {what} must be a positive size in metres, got {value}")
    run = CloudRun()
    grid = VoxelGrid(merge_voxel, keep_instances=False) if poses is not None else None
    if poses is not None:
        poses = match_poses(poses, [name for name, _, _ in items])
    for name, build, target in items:
        try:
            cloud = build()
        except NoDepth as err:
            run.skipped.append((name, str(err)))
            continue
        except FileNotFoundError as err:  # an input moved since the run
            run.failed.append((name, str(err)))
            continue
        if grid is not None:
            grid.add(transform(cloud, poses[name]))
        write_ply(target, voxel_downsample(cloud, voxel) if voxel else cloud, [f"panosamic {name}"])
        run.written.append(target)
    if grid is not None:
        run.merged = grid.result()
    return run


def output_folders(out_dir: Path) -> list[Path]:
    """The panorama folders of a ``panosamic segment`` output folder (sorted)."""
    out_dir = Path(out_dir)
    folders = sorted(
        p.parent
        for p in out_dir.rglob("summary.json")
        if not any(part.startswith(".tmp-") for part in p.relative_to(out_dir).parts)
    )
    if not folders:
        raise ValueError(
            f"{out_dir} is not a `panosamic segment` output folder: no panorama folder with a summary.json"
        )
    return folders


def clouds_of_output(
    out_dir: Path,
    *,
    stride: int = 1,
    voxel: float | None = None,
    poses=None,
    merge_voxel: float = 0.05,
) -> CloudRun:
    """A cloud into every panorama folder of a segment run (``pointcloud.ply``)."""
    out_dir = Path(out_dir)
    items = [
        (
            folder.relative_to(out_dir).as_posix(),
            partial(cloud_of_output, folder, stride=stride),
            folder / CLOUD_NAME,
        )
        for folder in output_folders(out_dir)
    ]
    return write_clouds(items, voxel=voxel, poses=poses, merge_voxel=merge_voxel)


def clouds_of_prepared(
    root: Path,
    out: Path,
    dataset: str,
    *,
    samples: list[str] | None = None,
    stride: int = 1,
    voxel: float | None = None,
    poses=None,
    merge_voxel: float = 0.05,
) -> CloudRun:
    """Ground-truth clouds of a prepared dataset's samples, as ``<out>/<area>/<sample>.ply``."""
    from ..data.datasets import PanoramaDataset

    data = PanoramaDataset(dataset, root, split="all", modalities=("image",), mask_black=False)
    index = {data.sample_name(i): i for i in range(len(data))}
    unknown = [name for name in samples or [] if name not in index]
    if unknown:
        raise ValueError(
            f"{root} has no sample {', '.join(map(repr, unknown[:5]))}; its samples are named "
            f"<area or scene>/<sample>, e.g. {next(iter(index), 'none')!r}"
        )
    items = [
        (
            name,
            partial(cloud_of_sample, data, index[name], stride=stride),
            Path(out) / f"{name}.ply",
        )
        for name in samples or index
    ]
    return write_clouds(items, voxel=voxel, poses=poses, merge_voxel=merge_voxel)


def read_capture_poses(pose_file: Path | None, stanford_raw: Path | None) -> dict[str, np.ndarray]:
    """Poses from a JSON/CSV file, or from Stanford2D3DS's raw ``area_*/pano/pose/`` files."""
    if pose_file is not None:
        return read_poses(pose_file)
    files = sorted(Path(stanford_raw).glob("area_*/pano/pose/*_pose.json"))
    if not files:
        raise PoseError(
            f"no Stanford2D3DS pose files under {stanford_raw} (area_*/pano/pose/*_pose.json)"
        )
    return {f.name.removesuffix("_pose.json"): stanford_pose(f) for f in files}
