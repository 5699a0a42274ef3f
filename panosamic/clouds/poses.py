"""Camera poses of a capture: per-panorama 4 x 4 camera-to-world matrices.

Three sources:

- a JSON file ``{"<name>": [[4 x 4]], ...}`` (or ``{"poses": {...}}``), names as the
  panoramas' output names, or their file stems;
- a CSV file with a header ``name`` followed by the 16 matrix entries row by row
  (e.g. ``m0 ... m15``), or a header-less ``name`` and 16 numbers per line;
- Stanford2D3DS's own pose files, ``<area>/pano/pose/<camera>_domain_pose.json``,
  read as the dataset's README describes ``camera_rt_matrix``: the world-to-camera
  ``[R | t]`` (3 x 4) in OpenCV axes (x right, y down, z forward), the panorama's
  centre column looking along z; the file's ``camera_location`` must agree.
  Not yet checked against real panoramas: users report that the panoramas'
  frame also involves ``camera_original_rotation`` (2D-3D-Semantics issues 16
  and 42), so the command that reads them warns.

The matrices map the camera frame of :mod:`panosamic.data.sphere` (x forward,
y left, z up) to the world. Each must be rigid: a rotation (orthonormal,
determinant 1) and a translation, last row (0, 0, 0, 1).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

# our camera axes (x forward, y left, z up) in OpenCV's (x right, y down, z forward)
OURS_TO_OPENCV = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
TOLERANCE = 1e-3


class PoseError(ValueError):
    """A pose file or one of its matrices is unusable; the message names the panorama."""


def check_rigid(name: str, matrix: np.ndarray) -> np.ndarray:
    """``matrix`` as (4, 4) float64 when it is a rigid transform; PoseError naming ``name``."""
    try:
        matrix = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise PoseError(f"pose of {name!r} is not a matrix of numbers: {err}") from err
    if matrix.shape != (4, 4):
        raise PoseError(f"pose of {name!r} is not 4 x 4 but {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise PoseError(f"pose of {name!r} holds NaN or infinite entries")
    if not np.allclose(matrix[3], [0, 0, 0, 1], atol=TOLERANCE):
        raise PoseError(f"pose of {name!r}: its last row is {matrix[3].tolist()}, not [0, 0, 0, 1]")
    rotation = matrix[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=TOLERANCE):
        raise PoseError(f"pose of {name!r} is not rigid: its rotation part is not orthonormal")
    if np.linalg.det(rotation) < 0:
        raise PoseError(f"pose of {name!r} is a reflection (determinant -1), not a rotation")
    return matrix


def read_poses(path: str | Path) -> dict[str, np.ndarray]:
    """Name -> (4, 4) camera-to-world of a JSON or CSV pose file, every matrix checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pose file {path} does not exist")
    if path.suffix.lower() == ".json":
        raw = _json(path)
    elif path.suffix.lower() == ".csv":
        raw = _csv(path)
    else:
        raise PoseError(f"{path}: a pose file is .json or .csv")
    return {name: check_rigid(name, matrix) for name, matrix in raw.items()}


def _json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PoseError(f"{path} is not valid JSON: {err}") from err
    if isinstance(data, Mapping) and isinstance(data.get("poses"), Mapping):
        data = data["poses"]
    if not isinstance(data, Mapping):
        raise PoseError(f"{path}: expected an object name -> 4 x 4 matrix")
    return dict(data)


def _csv(path: Path) -> dict[str, object]:
    lines = enumerate(csv.reader(path.read_text().splitlines()), start=1)
    rows = [(number, r) for number, r in lines if r and any(r)]
    if rows and rows[0][1][0].strip().lower() == "name":
        rows = rows[1:]
    poses: dict[str, object] = {}
    for number, row in rows:
        name = row[0].strip()
        if len(row) != 17:
            raise PoseError(
                f"{path} line {number} ({name!r}): expected a name and 16 numbers, got {len(row) - 1}"
            )
        try:
            poses[name] = np.array([float(v) for v in row[1:]]).reshape(4, 4)
        except ValueError as err:
            raise PoseError(f"{path} line {number} ({name!r}): {err}") from err
    return poses


def stanford_pose(path: str | Path) -> np.ndarray:
    """The camera-to-world matrix of a Stanford2D3DS panorama pose file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        rt = np.asarray(data["camera_rt_matrix"], dtype=np.float64)
        location = np.asarray(data["camera_location"], dtype=np.float64)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise PoseError(f"{path}: not a Stanford2D3DS pose file ({err})") from err
    if rt.shape != (3, 4) or location.shape != (3,):
        raise PoseError(f"{path}: camera_rt_matrix must be 3 x 4 and camera_location 3 numbers")
    world_to_cv = np.eye(4)
    world_to_cv[:3] = rt
    cv_to_world = np.linalg.inv(check_rigid(path.name, world_to_cv))
    if not np.allclose(cv_to_world[:3, 3], location, atol=1e-2):
        raise PoseError(
            f"{path}: camera_rt_matrix puts the camera at {cv_to_world[:3, 3].round(3).tolist()}, "
            f"but camera_location says {location.round(3).tolist()}"
        )
    pose = np.eye(4)
    pose[:3, :3] = cv_to_world[:3, :3] @ OURS_TO_OPENCV
    pose[:3, 3] = location
    return pose


def match_poses(poses: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Each panorama's pose, by its output name or else its last path part (``scene/p0`` ->
    ``p0``, when no other panorama ends the same); PoseError naming those without one."""
    last = [name.rsplit("/", 1)[-1] for name in names]
    matched, missing = {}, []
    for name, part in zip(names, last, strict=True):
        if name in poses:
            matched[name] = poses[name]
        elif part in poses and last.count(part) == 1:
            matched[name] = poses[part]
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise PoseError(
            f"no pose for panorama {shown} ({len(missing)} of {len(names)}; the pose file has "
            f"{len(poses)} poses, keyed by the run's panorama names or, when unambiguous, their "
            "last part)"
        )
    return matched
