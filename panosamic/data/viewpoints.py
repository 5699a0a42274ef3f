"""Several viewpoints of one synthetic room, with their camera-to-world poses and exact geometry.

The ground truth for point clouds: every viewpoint is rendered from a free spot
of the same room, turned about z by its own yaw, so that a cloud built from a
view's depth and moved by its pose must land on the room's surfaces, and the
clouds of two views on the same ones. :func:`surface_distance` measures that
against the room's primitives; :func:`write_capture` writes the views as files
with their poses (``panosamic synth --views``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .render import ALL_KINDS, CLASS_INDEX, Box, Cylinder, Rendering, Room, generate_room, render
from .sphere import yaw_matrix
from .synth import synth_kinds


@dataclass
class View:
    """One rendered viewpoint: the panorama's arrays and its (4, 4) camera-to-world pose."""

    rendering: Rendering
    pose: np.ndarray


def camera_pose(position: tuple[float, float, float], yaw: float) -> np.ndarray:
    """(4, 4) camera-to-world of a camera at ``position`` turned ``yaw`` about z."""
    pose = np.eye(4)
    pose[:3, :3] = yaw_matrix(yaw)
    pose[:3, 3] = position
    return pose


def free_positions(room: Room, count: int, rng: np.random.Generator, clearance: float = 0.35):
    """``count`` camera positions at the room's camera height with nothing within ``clearance``."""
    lx, ly, _ = room.size
    z = room.camera[2]
    positions: list[tuple[float, float, float]] = []
    for _ in range(2000):
        if len(positions) == count:
            break
        x, y = float(rng.uniform(0.6, lx - 0.6)), float(rng.uniform(0.6, ly - 0.6))
        point = np.array([x, y, z])
        near = [surface_distance_to(p, point[None])[0] for p in (*room.boxes, *room.cylinders)]
        inside = any(_inside(p, point) for p in room.boxes)
        if not inside and min(near, default=np.inf) > clearance:
            positions.append((x, y, z))
    if len(positions) < count:
        raise ValueError(f"room has room for only {len(positions)} free viewpoints, {count} asked")
    return positions


def render_viewpoints(
    seed: int, count: int, height: int = 256, width: int = 512, *, dataset: str | None = None
) -> list[View]:
    """The room of ``seed`` seen from its own camera and ``count - 1`` more free spots, each with
    a random yaw; exact depth (no sensor holes), sensor noise in the RGB only."""
    room = generate_room(seed, synth_kinds(dataset) if dataset else ALL_KINDS)
    rng = np.random.default_rng([seed, 7])
    positions = [tuple(room.camera), *free_positions(room, count - 1, rng)]
    views = []
    for position in positions:
        yaw = float(rng.uniform(-np.pi, np.pi))
        rendering = render(replace(room, camera=position), height, width, yaw=yaw)
        views.append(View(rendering, camera_pose(position, yaw)))
    return views


def write_capture(
    out: Path,
    rooms: int,
    views: int,
    seed: int = 0,
    height: int = 512,
    *,
    dataset: str = "stanford2d3ds",
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Write ``views`` viewpoints of each of ``rooms`` rooms as a capture; returns the poses.

    The layout a scanner leaves: ``rgb/<room>_view<k>.png``, ``depth/`` (uint16
    millimetres along the ray, 0 = none), ``normal/`` (RGB encoded, camera frame),
    ``semantic/`` (uint8 class index in the dataset's list, 255 = none) and
    ``poses.json`` (camera-to-world 4 x 4 per panorama name). Each room's views
    share its frame; room ``r`` is moved ``r`` times 12 m along y, so the
    capture's merged cloud shows the rooms side by side.
    """
    from ..utils.atomic import save_image, write_json
    from .files import save_png16
    from .normals import encode_normals
    from .synth import expected_semantics

    out = Path(out)
    poses: dict[str, np.ndarray] = {}
    for r in tqdm(range(rooms), desc="synth views", unit="room", disable=not progress):
        offset = np.eye(4)
        offset[1, 3] = 12.0 * r
        for k, view in enumerate(
            render_viewpoints(seed + r, views, height, 2 * height, dataset=dataset)
        ):
            name, image = f"room{r:02d}_view{k}", view.rendering
            save_image(Image.fromarray(image.rgb), out / "rgb" / f"{name}.png")
            millimetres = np.where(image.valid, np.clip(np.rint(image.depth * 1000), 1, 65535), 0)
            save_png16(millimetres.astype(np.uint16), out / "depth" / f"{name}.png")
            normals = encode_normals(image.normals, image.valid)
            save_image(Image.fromarray(normals), out / "normal" / f"{name}.png")
            classes = expected_semantics(dataset, image)
            semantic = np.where(classes >= 0, classes, 255).astype(np.uint8)
            save_image(Image.fromarray(semantic), out / "semantic" / f"{name}.png")
            poses[name] = offset @ view.pose
    write_json(out / "poses.json", {name: pose.tolist() for name, pose in poses.items()})
    return poses


def surface_distance(room: Room, points: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """(P,) distance of world points (P, 3) to the surface of the instance each lies on
    (``instances``: 1-based instance ids as in :class:`Rendering`)."""
    out = np.full(len(points), np.inf)
    for face, (_, instance, _) in enumerate(room.surfaces):
        chosen = instances == instance
        out[chosen] = np.minimum(out[chosen], _face_distance(room, face, points[chosen]))
    for primitive in (*room.boxes, *room.cylinders):
        chosen = instances == primitive.instance
        if chosen.any():
            out[chosen] = np.minimum(out[chosen], surface_distance_to(primitive, points[chosen]))
    return out


def nearest_surface_label(room: Room, points: np.ndarray) -> np.ndarray:
    """(P,) class (index into the renderer's classes) of the surface nearest each point."""
    labels, best = np.full(len(points), -1), np.full(len(points), np.inf)
    candidates = [
        (label, _face_distance(room, face, points))
        for face, (label, _, _) in enumerate(room.surfaces)
    ]
    candidates += [
        (p.label, surface_distance_to(p, points)) for p in (*room.boxes, *room.cylinders)
    ]
    for label, distance in candidates:
        closer = distance < best
        best[closer], labels[closer] = distance[closer], CLASS_INDEX[label]
    return labels


def _face_distance(room: Room, face: int, points: np.ndarray) -> np.ndarray:
    axis = face // 2 if face < 4 else 2
    bound = 0.0 if face % 2 == 0 else room.size[axis]
    return np.abs(points[:, axis] - bound)


def surface_distance_to(primitive: Box | Cylinder, points: np.ndarray) -> np.ndarray:
    """(P,) distance of points (P, 3) to the surface of a box or an (open) cylinder."""
    if isinstance(primitive, Box):
        local = _box_local(primitive, points)
        q = np.abs(local) - np.asarray(primitive.half)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return np.abs(outside + inside)
    radial = np.hypot(points[:, 0] - primitive.center[0], points[:, 1] - primitive.center[1])
    lateral = np.abs(radial - primitive.radius)
    beyond = np.maximum(np.maximum(primitive.z0 - points[:, 2], points[:, 2] - primitive.z1), 0.0)
    return np.hypot(lateral, beyond)


def _box_local(box: Box, points: np.ndarray) -> np.ndarray:
    return (points - np.asarray(box.center)) @ yaw_matrix(box.yaw)


def _inside(primitive: Box | Cylinder, point: np.ndarray) -> bool:
    if not isinstance(primitive, Box):
        return False
    local = _box_local(primitive, point[None])[0]
    return bool(np.all(np.abs(local) <= np.asarray(primitive.half)))
