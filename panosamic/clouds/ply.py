"""Labelled point clouds as binary little-endian PLY files (through ``plyfile``).

One ``vertex`` element with ``x``, ``y``, ``z`` (float32, metres), ``red``,
``green``, ``blue`` (uint8), ``label`` (int32 class index, -1 none),
``instance`` (int32, -1 none) and ``confidence`` (float32): CloudCompare,
Open3D, MeshLab and three.js read the colours and keep the other properties
as scalar fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..utils.atomic import atomic_write
from .points import LabelledCloud, spread_indices

VERTEX_TYPE = np.dtype(
    [
        ("x", "<f4"),
        ("y", "<f4"),
        ("z", "<f4"),
        ("red", "u1"),
        ("green", "u1"),
        ("blue", "u1"),
        ("label", "<i4"),
        ("instance", "<i4"),
        ("confidence", "<f4"),
    ]
)


# the same bytes with the coordinates and the colours as one opaque field each: five record
# copies instead of nine strided ones
_PACKED_TYPE = np.dtype(
    {
        "names": ["xyz", "rgb", "label", "instance", "confidence"],
        "formats": [np.dtype((np.void, 12)), np.dtype((np.void, 3)), "<i4", "<i4", "<f4"],
        "offsets": [
            VERTEX_TYPE.fields[n][1] for n in ("x", "red", "label", "instance", "confidence")
        ],
        "itemsize": VERTEX_TYPE.itemsize,
    }
)


def vertex_array(cloud: LabelledCloud) -> np.ndarray:
    """The cloud as a structured array of :data:`VERTEX_TYPE`."""
    vertices = np.empty(len(cloud), dtype=_PACKED_TYPE)
    for name, array, dtype in (("xyz", cloud.xyz, "<f4"), ("rgb", cloud.rgb, "u1")):
        packed = np.ascontiguousarray(array, dtype=dtype).reshape(len(cloud), 3)
        vertices[name] = packed.view(_PACKED_TYPE[name])[:, 0]
    vertices["label"], vertices["instance"] = cloud.label, cloud.instance
    vertices["confidence"] = cloud.confidence
    return vertices.view(VERTEX_TYPE)


def ply_data(cloud: LabelledCloud, comments: list[str] | None = None) -> Any:
    """The cloud as a binary little-endian ``plyfile.PlyData`` (``.write(file or stream)``)."""
    from plyfile import PlyData, PlyElement

    element = PlyElement.describe(vertex_array(cloud), "vertex")
    # PLY headers are ASCII lines: a panorama named "küche/p0" becomes "k\xfcche/p0"
    safe = [
        " ".join(c.encode("ascii", "backslashreplace").decode().split()) for c in comments or []
    ]
    return PlyData([element], text=False, byte_order="<", comments=safe)


def write_ply(
    path: str | Path,
    cloud: LabelledCloud,
    comments: list[str] | None = None,
    *,
    atomic: bool = True,
) -> None:
    """Write ``cloud`` as a binary little-endian PLY: aside, synced and moved into place, or,
    with ``atomic=False``, straight to ``path`` (for a folder that is itself staged)."""
    data = ply_data(cloud, comments)
    if atomic:
        atomic_write(path, lambda tmp: data.write(str(tmp)))
    else:
        data.write(str(path))


def read_ply(path: str | Path, at_most: int | None = None) -> LabelledCloud:
    """Read a labelled PLY written by :func:`write_ply` (other PLYs: what they have); with
    ``at_most``, only that many evenly spread points (the file is mapped, not read whole)."""
    from plyfile import PlyData

    data = PlyData.read(str(path))["vertex"].data
    if at_most is not None and len(data) > at_most:
        data = data[spread_indices(len(data), at_most)]
    names = data.dtype.names
    n = len(data)

    def field(name: str, default: float, dtype: str) -> np.ndarray:
        return np.asarray(data[name] if name in names else np.full(n, default), dtype=dtype)

    xyz = np.stack([field(a, 0, "float32") for a in "xyz"], axis=1)
    rgb = np.stack([field(c, 0, "uint8") for c in ("red", "green", "blue")], axis=1)
    return LabelledCloud(
        xyz,
        rgb,
        field("label", -1, "int32"),
        field("instance", -1, "int32"),
        field("confidence", np.nan, "float32"),
    )
