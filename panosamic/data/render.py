"""A procedural indoor-room generator and an exact equirectangular ray caster (numpy only).

:func:`generate_room` draws a random room (walls, floor, ceiling, doors,
windows, boards, pictures, columns, beams, tables with chairs, sofas, bookcases,
cabinets, beds, clutter), :func:`render` ray-casts it from the room's camera:
RGB (textured, Lambertian point lights with one shadowing light), metric depth
(distance along each ray), unit normals (camera frame of
:mod:`panosamic.data.sphere`, facing the camera), semantic labels (indices
into :data:`CLASSES`) and instance ids. Everything is deterministic per seed.

Geometry: a room is the axis-aligned box [0, Lx] x [0, Ly] x [0, Lz] (z up);
objects are boxes (optionally turned about z) and vertical cylinders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .sphere import direction_to_pixel, pixel_directions, yaw_matrix

# Internal classes of the renderer; each dataset maps them to its own labels.
CLASSES: tuple[str, ...] = (
    "wall", "floor", "ceiling", "door", "window", "table", "chair", "sofa", "bookcase",
    "cabinet", "bed", "board", "picture", "column", "beam", "clutter",
)  # fmt: skip
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
ALL_KINDS = frozenset(CLASSES)
ROOM_TYPES = ("office", "conferenceRoom", "hallway", "lounge", "storage", "pantry", "bedroom")


@dataclass(frozen=True)
class Material:
    """Surface appearance: a pattern mixing two linear-RGB colours, ``scale`` in metres."""

    color: tuple[float, float, float]
    color2: tuple[float, float, float]
    pattern: str = "plain"  # plain | noise | planks | tiles | stripes | shelves
    scale: float = 0.5
    emission: float = 0.0  # windows glow


@dataclass(frozen=True)
class Box:
    """A box of half extents ``half`` (local x, y, z) centred at ``center``, turned ``yaw`` about z."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    label: str
    instance: int
    material: Material
    yaw: float = 0.0


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder (no caps) between heights z0 and z1."""

    center: tuple[float, float]
    radius: float
    z0: float
    z1: float
    label: str
    instance: int
    material: Material


@dataclass
class Room:
    """A generated room: geometry, materials, lights, camera and the instance table."""

    size: tuple[float, float, float]
    camera: tuple[float, float, float]
    surfaces: list[tuple[str, int, Material]]  # x-, x+, y-, y+ walls, floor, ceiling
    boxes: list[Box] = field(default_factory=list)
    cylinders: list[Cylinder] = field(default_factory=list)
    lights: list[tuple[tuple[float, float, float], float]] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)  # label of instance id i + 1
    room_type: str = "office"
    holes_seed: int = 0
    hole_fraction: float = 0.0  # > 0: add missing-data regions (sensor holes)


@dataclass
class Rendering:
    """The arrays of one rendered panorama (H x W)."""

    rgb: np.ndarray  # (H, W, 3) uint8, black where invalid
    depth: np.ndarray  # (H, W) float32 metres along the ray, 0 where invalid
    valid: np.ndarray  # (H, W) bool: False in sensor holes
    normals: np.ndarray  # (H, W, 3) float32 unit, camera frame, 0 where invalid
    semantics: np.ndarray  # (H, W) int16 index into CLASSES, -1 where invalid
    instances: np.ndarray  # (H, W) int32 instance id (1-based), 0 where invalid
    instance_labels: list[str]  # label of instance id i + 1
    room: Room


# ----------------------------------------------------------------------------- generation


class _Builder:
    """Accumulates the primitives of a room while keeping floor footprints apart."""

    def __init__(self, rng: np.random.Generator, size: tuple[float, float, float], kinds) -> None:
        self.rng = rng
        self.size = size
        self.kinds = kinds
        self.boxes: list[Box] = []
        self.cylinders: list[Cylinder] = []
        self.instances: list[str] = []
        self.footprints: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1
        self.wall_spans: dict[int, list[tuple[float, float]]] = {w: [] for w in range(4)}

    def new_instance(self, label: str) -> int:
        self.instances.append(label)
        return len(self.instances)

    def box(self, center, half, label, instance, material, yaw=0.0) -> None:
        self.boxes.append(
            Box(
                tuple(map(float, center)),
                tuple(map(float, half)),
                label,
                instance,
                material,
                float(yaw),
            )
        )

    def footprint_free(self, x0: float, y0: float, x1: float, y1: float, margin=0.1) -> bool:
        lx, ly, _ = self.size
        if x0 < 0.02 or y0 < 0.02 or x1 > lx - 0.02 or y1 > ly - 0.02:
            return False
        return all(
            x1 + margin <= a0 or a2 <= x0 - margin or y1 + margin <= a1 or a3 <= y0 - margin
            for a0, a1, a2, a3 in self.footprints
        )

    def claim(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.footprints.append((x0, y0, x1, y1))

    def wall_free(self, wall: int, a: float, b: float, margin: float = 0.15) -> bool:
        return all(b + margin <= s or e <= a - margin for s, e in self.wall_spans[wall])


def _color(rng: np.random.Generator, lo: float, hi: float, tint: float = 0.15):
    base = rng.uniform(lo, hi)
    return tuple(float(np.clip(base * (1 + rng.uniform(-tint, tint)), 0.01, 1.0)) for _ in range(3))


def _material(rng: np.random.Generator, kind: str) -> Material:
    """A random material suited to a surface kind."""
    if kind == "wall":
        c = _color(rng, 0.45, 0.85, 0.12)
        pattern = str(rng.choice(["plain", "noise", "stripes"], p=[0.5, 0.35, 0.15]))
        return Material(c, tuple(x * 0.9 for x in c), pattern, float(rng.uniform(0.3, 1.2)))
    if kind == "floor":
        c = _color(rng, 0.2, 0.55, 0.3)
        pattern = str(rng.choice(["planks", "tiles", "noise"]))
        return Material(c, tuple(x * 0.7 for x in c), pattern, float(rng.uniform(0.2, 0.6)))
    if kind == "ceiling":
        c = _color(rng, 0.75, 0.95, 0.04)
        return Material(c, tuple(x * 0.85 for x in c), "tiles", float(rng.uniform(0.5, 1.2)))
    if kind == "window":
        c = (0.75, 0.85, 1.0)
        return Material(c, (0.55, 0.65, 0.8), "stripes", 0.6, emission=1.2)
    if kind == "board":
        return Material((0.9, 0.9, 0.92), (0.75, 0.75, 0.8), "noise", 0.4)
    if kind == "bookcase":
        c = _color(rng, 0.2, 0.5, 0.3)
        return Material(c, tuple(x * 0.4 for x in c), "shelves", 0.35)
    if kind in ("table", "door", "cabinet"):
        c = _color(rng, 0.2, 0.6, 0.35)
        return Material(c, tuple(x * 0.75 for x in c), "planks", float(rng.uniform(0.08, 0.2)))
    c = tuple(float(x) for x in rng.uniform(0.08, 0.9, size=3))
    pattern = str(rng.choice(["plain", "noise", "stripes"]))
    return Material(c, tuple(x * 0.6 for x in c), pattern, float(rng.uniform(0.05, 0.3)))


def generate_room(seed: int | np.random.SeedSequence, kinds=ALL_KINDS, holes: float = 0.0) -> Room:
    """A random furnished room; only object kinds in ``kinds`` are placed.

    Walls, floor and ceiling are always present. ``holes`` > 0 marks that fraction
    of the panorama (roughly) as missing data, plus the area below the camera.
    """
    rng = np.random.default_rng(seed)
    size = (
        float(rng.uniform(3.5, 9.0)),
        float(rng.uniform(3.5, 9.0)),
        float(rng.uniform(2.5, 3.3)),
    )
    b = _Builder(rng, size, frozenset(kinds))
    surfaces = []
    for name in ("wall", "wall", "wall", "wall", "floor", "ceiling"):
        surfaces.append((name, b.new_instance(name), _material(rng, name)))
    wall_mat = surfaces[0][2]
    for i in range(1, 4):  # walls of one room mostly share their paint
        if rng.random() < 0.8:
            surfaces[i] = (surfaces[i][0], surfaces[i][1], wall_mat)
    _add_wall_objects(b)
    _add_structure(b)
    _add_furniture(b)
    camera = _place_camera(b)
    lx, ly, lz = size
    lights = [
        (
            (float(rng.uniform(0.2, 0.8) * lx), float(rng.uniform(0.2, 0.8) * ly), lz - 0.05),
            float(rng.uniform(5.0, 9.0)),
        )
    ]
    if rng.random() < 0.6:
        lights.append(
            (
                (float(rng.uniform(0.1, 0.9) * lx), float(rng.uniform(0.1, 0.9) * ly), lz - 0.05),
                float(rng.uniform(2.0, 5.0)),
            )
        )
    return Room(
        size=size,
        camera=camera,
        surfaces=surfaces,
        boxes=b.boxes,
        cylinders=b.cylinders,
        lights=lights,
        instances=b.instances,
        room_type=str(rng.choice(ROOM_TYPES)),
        holes_seed=int(rng.integers(2**31)),
        hole_fraction=float(holes),
    )


def _wall_frame(size, wall: int):
    """(length of the wall, function mapping (along, out) to world xy, outward-into-room axis)."""
    lx, ly, _ = size
    if wall == 0:  # x = 0, running along y
        return ly, lambda a, o: (o, a), 0
    if wall == 1:  # x = Lx
        return ly, lambda a, o: (lx - o, a), 0
    if wall == 2:  # y = 0
        return lx, lambda a, o: (a, o), 1
    return lx, lambda a, o: (a, ly - o), 1


def _wall_box(
    b: _Builder,
    wall: int,
    along: float,
    width: float,
    z0: float,
    z1: float,
    thickness: float,
    label: str,
    instance: int,
    material: Material,
) -> None:
    _, to_xy, axis = _wall_frame(b.size, wall)
    x, y = to_xy(along, thickness / 2)
    half = [0.0, 0.0, (z1 - z0) / 2]
    half[axis] = thickness / 2
    half[1 - axis] = width / 2
    b.box((x, y, (z0 + z1) / 2), half, label, instance, material)


def _place_on_wall(b: _Builder, label: str, width_range, z_range, height_range, thickness) -> bool:
    rng = b.rng
    for _ in range(20):
        wall = int(rng.integers(4))
        length, _, _ = _wall_frame(b.size, wall)
        width = float(rng.uniform(*width_range))
        if width > length - 0.4:
            continue
        along = float(rng.uniform(0.2 + width / 2, length - 0.2 - width / 2))
        if not b.wall_free(wall, along - width / 2, along + width / 2):
            continue
        height = float(rng.uniform(*height_range))
        z0 = float(rng.uniform(*z_range))
        z1 = min(z0 + height, b.size[2] - 0.1)
        b.wall_spans[wall].append((along - width / 2, along + width / 2))
        _wall_box(
            b,
            wall,
            along,
            width,
            z0,
            z1,
            thickness,
            label,
            b.new_instance(label),
            _material(rng, label),
        )
        if label == "door":  # keep furniture out of the door's way
            _, to_xy, _ = _wall_frame(b.size, wall)
            (xa, ya), (xb, yb) = to_xy(along - width / 2, 0.0), to_xy(along + width / 2, 0.9)
            b.claim(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
        return True
    return False


def _add_wall_objects(b: _Builder) -> None:
    rng = b.rng
    if "door" in b.kinds:
        for _ in range(int(rng.integers(1, 3))):
            _place_on_wall(b, "door", (0.8, 1.0), (0.0, 0.0), (2.0, 2.15), 0.04)
    if "window" in b.kinds:
        for _ in range(int(rng.integers(0, 4))):
            _place_on_wall(b, "window", (0.8, 2.0), (0.8, 1.0), (1.0, 1.4), 0.03)
    if "board" in b.kinds and rng.random() < 0.6:
        _place_on_wall(b, "board", (1.2, 2.4), (0.85, 1.0), (0.9, 1.2), 0.03)
    if "picture" in b.kinds:
        for _ in range(int(rng.integers(0, 3))):
            _place_on_wall(b, "picture", (0.4, 0.9), (1.3, 1.6), (0.35, 0.7), 0.025)


def _add_structure(b: _Builder) -> None:
    rng = b.rng
    lx, ly, lz = b.size
    if "column" in b.kinds:
        for _ in range(int(rng.integers(0, 3))):
            if rng.random() < 0.5:  # a square pillar against a wall
                w = float(rng.uniform(0.3, 0.6))
                wall = int(rng.integers(4))
                length, to_xy, _ = _wall_frame(b.size, wall)
                along = float(rng.uniform(w, length - w))
                x, y = to_xy(along, w / 2)
                if not b.footprint_free(x - w / 2, y - w / 2, x + w / 2, y + w / 2, 0.05):
                    continue
                b.claim(x - w / 2, y - w / 2, x + w / 2, y + w / 2)
                b.box(
                    (x, y, lz / 2),
                    (w / 2, w / 2, lz / 2),
                    "column",
                    b.new_instance("column"),
                    _material(rng, "wall"),
                )
            else:  # a free-standing round column
                r = float(rng.uniform(0.15, 0.3))
                x, y = (
                    float(rng.uniform(r + 0.5, lx - r - 0.5)),
                    float(rng.uniform(r + 0.5, ly - r - 0.5)),
                )
                if not b.footprint_free(x - r, y - r, x + r, y + r):
                    continue
                b.claim(x - r, y - r, x + r, y + r)
                b.cylinders.append(
                    Cylinder(
                        (x, y),
                        r,
                        0.0,
                        lz,
                        "column",
                        b.new_instance("column"),
                        _material(rng, "wall"),
                    )
                )
    if "beam" in b.kinds:
        for _ in range(int(rng.integers(0, 3))):
            depth, width = float(rng.uniform(0.2, 0.4)), float(rng.uniform(0.2, 0.4))
            inst = b.new_instance("beam")
            if rng.random() < 0.5:
                y = float(rng.uniform(0.5, ly - 0.5))
                b.box(
                    (lx / 2, y, lz - depth / 2),
                    (lx / 2, width / 2, depth / 2),
                    "beam",
                    inst,
                    _material(rng, "ceiling"),
                )
            else:
                x = float(rng.uniform(0.5, lx - 0.5))
                b.box(
                    (x, ly / 2, lz - depth / 2),
                    (width / 2, ly / 2, depth / 2),
                    "beam",
                    inst,
                    _material(rng, "ceiling"),
                )


def _free_spot(b: _Builder, half_x: float, half_y: float, against_wall: bool):
    """A free footprint centre (x, y) and the yaw (multiple of 90 degrees) facing into the room."""
    rng = b.rng
    lx, ly, _ = b.size
    for _ in range(30):
        if against_wall:
            wall = int(rng.integers(4))
            length, to_xy, axis = _wall_frame(b.size, wall)
            along = float(rng.uniform(half_x + 0.05, max(half_x + 0.06, length - half_x - 0.05)))
            x, y = to_xy(along, half_y + 0.03)
            yaw = (-np.pi / 2, np.pi / 2, 0.0, np.pi)[wall]  # local -y faces the wall
            ex, ey = (half_y, half_x) if axis == 0 else (half_x, half_y)
        else:
            x, y = float(rng.uniform(0.6, lx - 0.6)), float(rng.uniform(0.6, ly - 0.6))
            yaw = (
                float(rng.choice([0.0, np.pi / 2]))
                if rng.random() < 0.7
                else float(rng.uniform(0, np.pi))
            )
            c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
            ex, ey = c * half_x + s * half_y, s * half_x + c * half_y
        if b.footprint_free(x - ex, y - ey, x + ex, y + ey):
            b.claim(x - ex, y - ey, x + ex, y + ey)
            return x, y, yaw
    return None


def _local(x, y, yaw, dx, dy):
    """World xy of the offset (dx, dy) in a frame turned by yaw at (x, y)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return x + c * dx - s * dy, y + s * dx + c * dy


def _add_table(b: _Builder) -> None:
    rng = b.rng
    hx, hy = float(rng.uniform(0.4, 1.0)), float(rng.uniform(0.35, 0.6))
    spot = _free_spot(b, hx + 0.55, hy + 0.55, against_wall=False)
    if spot is None:
        return
    x, y, yaw = spot
    mat, inst = _material(rng, "table"), b.new_instance("table")
    top = float(rng.uniform(0.7, 0.78))
    b.box((x, y, top - 0.02), (hx, hy, 0.02), "table", inst, mat, yaw)
    for sx in (-1, 1):
        for sy in (-1, 1):
            lx_, ly_ = _local(x, y, yaw, sx * (hx - 0.06), sy * (hy - 0.06))
            b.box(
                (lx_, ly_, (top - 0.04) / 2),
                (0.03, 0.03, (top - 0.04) / 2),
                "table",
                inst,
                mat,
                yaw,
            )
    if "clutter" in b.kinds:
        for _ in range(int(rng.integers(0, 4))):
            s = float(rng.uniform(0.05, 0.18))
            cx, cy = _local(
                x, y, yaw, float(rng.uniform(-hx + s, hx - s)), float(rng.uniform(-hy + s, hy - s))
            )
            h = float(rng.uniform(0.03, 0.3))
            b.box(
                (cx, cy, top + h / 2),
                (s, s * 0.7, h / 2),
                "clutter",
                b.new_instance("clutter"),
                _material(rng, "clutter"),
                yaw + float(rng.uniform(0, 1)),
            )
    if "chair" in b.kinds:
        for side in range(4):
            if rng.random() < 0.55:
                along = hx if side % 2 == 0 else hy
                dist = (hy if side % 2 == 0 else hx) + 0.3
                angle = yaw + side * np.pi / 2
                cx, cy = _local(x, y, angle, 0.0, 0.0)
                cx, cy = _local(cx, cy, angle, float(rng.uniform(-along, along)) * 0.5, -dist)
                _add_chair(b, cx, cy, angle + float(rng.uniform(-0.3, 0.3)))


def _add_chair(b: _Builder, x: float, y: float, yaw: float) -> None:
    rng = b.rng
    mat, inst = _material(rng, "chair"), b.new_instance("chair")
    s, seat = float(rng.uniform(0.2, 0.26)), float(rng.uniform(0.42, 0.48))
    b.box((x, y, seat), (s, s, 0.03), "chair", inst, mat, yaw)
    bx, by = _local(x, y, yaw, 0.0, -s + 0.02)
    b.box((bx, by, seat + 0.25), (s, 0.02, 0.22), "chair", inst, mat, yaw)
    for sx in (-1, 1):
        for sy in (-1, 1):
            lx_, ly_ = _local(x, y, yaw, sx * (s - 0.03), sy * (s - 0.03))
            b.box((lx_, ly_, seat / 2), (0.02, 0.02, seat / 2), "chair", inst, mat, yaw)


def _add_single_chair(b: _Builder) -> None:
    spot = _free_spot(b, 0.3, 0.3, against_wall=False)
    if spot:
        _add_chair(b, *spot)


def _add_sofa(b: _Builder) -> None:
    hx, hy = float(b.rng.uniform(0.7, 1.2)), 0.45
    spot = _free_spot(b, hx, hy, against_wall=True)
    if spot:
        x, y, yaw = spot
        mat, inst = _material(b.rng, "sofa"), b.new_instance("sofa")
        b.box((x, y, 0.22), (hx, hy, 0.22), "sofa", inst, mat, yaw)
        bx, by = _local(x, y, yaw, 0.0, -hy + 0.1)
        b.box((bx, by, 0.6), (hx, 0.1, 0.2), "sofa", inst, mat, yaw)


def _add_storage(b: _Builder, kind: str) -> None:
    """A bookcase (tall) or a cabinet (low) against a wall."""
    rng = b.rng
    hx, hy = float(rng.uniform(0.4, 0.9)), float(rng.uniform(0.15, 0.25))
    height = float(rng.uniform(1.6, 2.3)) if kind == "bookcase" else float(rng.uniform(0.7, 1.1))
    spot = _free_spot(b, hx, hy, against_wall=True)
    if spot:
        x, y, yaw = spot
        mat, inst = _material(rng, kind), b.new_instance(kind)
        b.box((x, y, height / 2), (hx, hy, height / 2), kind, inst, mat, yaw)


def _add_bed(b: _Builder) -> None:
    hx, hy = float(b.rng.uniform(0.45, 0.9)), 1.0
    spot = _free_spot(b, hx, hy, against_wall=True)
    if spot:
        x, y, yaw = spot
        mat, inst = _material(b.rng, "bed"), b.new_instance("bed")
        b.box((x, y, 0.25), (hx, hy, 0.25), "bed", inst, mat, yaw)
        head_x, head_y = _local(x, y, yaw, 0.0, -hy + 0.04)
        b.box((head_x, head_y, 0.55), (hx, 0.04, 0.55), "bed", inst, mat, yaw)


def _add_floor_clutter(b: _Builder) -> None:
    s = float(b.rng.uniform(0.1, 0.3))
    spot = _free_spot(b, s, s, against_wall=bool(b.rng.random() < 0.5))
    if spot:
        x, y, yaw = spot
        h = float(b.rng.uniform(0.1, 0.6))
        mat, inst = _material(b.rng, "clutter"), b.new_instance("clutter")
        b.box((x, y, h / 2), (s, s, h / 2), "clutter", inst, mat, yaw)


_FURNITURE = {
    "table": _add_table,
    "sofa": _add_sofa,
    "bookcase": lambda b: _add_storage(b, "bookcase"),
    "cabinet": lambda b: _add_storage(b, "cabinet"),
    "bed": _add_bed,
    "chair": _add_single_chair,
    "clutter": _add_floor_clutter,
}


def _add_furniture(b: _Builder) -> None:
    """4 to 10 random pieces of furniture of the allowed kinds."""
    options = [k for k in _FURNITURE if k in b.kinds]
    for _ in range(int(b.rng.integers(4, 11))):
        if not options:
            return
        _FURNITURE[str(b.rng.choice(options))](b)


def _place_camera(b: _Builder) -> tuple[float, float, float]:
    rng = b.rng
    lx, ly, lz = b.size
    beam_bottom = min(
        [bx.center[2] - bx.half[2] for bx in b.boxes if bx.label == "beam"], default=lz
    )
    top = min(1.7, beam_bottom - 0.3, lz - 0.6)
    for attempt in range(200):
        spread = 0.2 if attempt < 100 else 0.4  # prefer the middle of the room
        x = float(rng.uniform(max(0.7, (0.5 - spread) * lx), min(lx - 0.7, (0.5 + spread) * lx)))
        y = float(rng.uniform(max(0.7, (0.5 - spread) * ly), min(ly - 0.7, (0.5 + spread) * ly)))
        if b.footprint_free(x - 0.25, y - 0.25, x + 0.25, y + 0.25, margin=0.15):
            return x, y, float(rng.uniform(min(1.0, top), top))
    # Crowded room: drop furniture around the centre rather than fail.
    x, y = lx / 2, ly / 2
    b.boxes[:] = [
        bx
        for bx in b.boxes
        if bx.label in ("door", "window", "board", "picture", "beam") or _far(bx, x, y)
    ]
    b.cylinders[:] = [
        c for c in b.cylinders if np.hypot(c.center[0] - x, c.center[1] - y) > c.radius + 0.4
    ]
    return x, y, float(min(1.4, top))


def _far(box: Box, x: float, y: float) -> bool:
    reach = np.hypot(box.half[0], box.half[1]) + 0.4
    return bool(np.hypot(box.center[0] - x, box.center[1] - y) > reach)


# ----------------------------------------------------------------------------- ray casting


def render(
    room: Room,
    height: int = 512,
    width: int = 1024,
    *,
    yaw: float = 0.0,
    shadows: bool = True,
    noise: float = 1.0,
) -> Rendering:
    """Ray-cast ``room`` from its camera into an H x W equirectangular panorama.

    ``yaw`` turns the camera about z (radians, counter-clockwise seen from above);
    normals are returned in the (turned) camera frame. ``noise`` scales the
    per-pixel sensor noise added to RGB (0: none).
    """
    if height < 2 or width != 2 * height:
        raise ValueError(f"panoramas are 2:1; got height {height}, width {width}")
    rot = yaw_matrix(yaw)
    dirs_cam = pixel_directions(height, width, np.float32)
    dirs = (dirs_cam.reshape(-1, 3) @ rot.T.astype(np.float32)).reshape(height, width, 3)
    cam = np.asarray(room.camera, dtype=np.float64)

    t, prim = _cast_room(room, dirs, cam)
    _cast_primitives(room, dirs, cam, t, prim, yaw)
    points = dirs * t[..., None]  # camera-relative, world axes
    normals = _surface_normals(room, points, cam, prim)
    albedo, emission = _albedo(room, points + cam.astype(np.float32), normals, prim)
    light = _lighting(room, points, normals, cam, shadows)
    rgb = _tone_map(albedo * light[..., None] + emission, room.holes_seed, noise)

    labels, instances = _labels(room, prim)
    valid = _holes(room, height, width)
    rgb[~valid] = 0
    depth = np.where(valid, t, 0.0).astype(np.float32)
    normals_cam = (normals.reshape(-1, 3) @ rot.astype(np.float32)).reshape(height, width, 3)
    normals_cam[~valid] = 0.0
    labels[~valid] = -1
    instances[~valid] = 0
    return Rendering(rgb, depth, valid, normals_cam, labels, instances, list(room.instances), room)


def _cast_room(room: Room, dirs: np.ndarray, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance through the room's box and the face hit (0..5 = x-, x+, y-, y+, floor, ceiling)."""
    size = np.asarray(room.size)
    best_t = np.full(dirs.shape[:2], np.inf, dtype=np.float32)
    face = np.zeros(dirs.shape[:2], dtype=np.int32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            d = dirs[..., axis]
            t = np.where(d > 0, np.float32(size[axis] - cam[axis]) / d, np.float32(-cam[axis]) / d)
            better = (t > 0) & (t < best_t)
            best_t = np.where(better, t, best_t)
            face = np.where(better, np.where(d > 0, 2 * axis + 1, 2 * axis), face)
    return best_t, face


def _angular_window(
    corners_rel: np.ndarray | None,
    zmin: float,
    zmax: float,
    rmin: float,
    rmax: float,
    height: int,
    width: int,
    yaw: float,
):
    """Rows [r0, r1) and column spans [(c0, c1), ...] of the pixels that can see a primitive.

    ``corners_rel`` (K, 2) are horizontal points whose angular extent covers the
    primitive as seen from the eye (None: the eye is above/below it, all columns);
    z and r bound its height and horizontal distance relative to the eye.
    """
    lat_hi = np.arctan2(zmax, rmin if zmax > 0 else rmax)
    lat_lo = np.arctan2(zmin, rmin if zmin < 0 else rmax)
    r0 = max(int(np.floor((np.pi / 2 - lat_hi) * height / np.pi - 0.5)) - 1, 0)
    r1 = min(int(np.ceil((np.pi / 2 - lat_lo) * height / np.pi - 0.5)) + 2, height)
    if corners_rel is None:
        return r0, r1, [(0, width)]
    lon = np.arctan2(-corners_rel[:, 1], corners_rel[:, 0]) + yaw
    delta = (lon - lon[0] + np.pi) % (2 * np.pi) - np.pi
    lo, hi = lon[0] + delta.min(), lon[0] + delta.max()
    c0 = int(np.floor((lo + np.pi) * width / (2 * np.pi) - 0.5)) - 1
    c1 = int(np.ceil((hi + np.pi) * width / (2 * np.pi) - 0.5)) + 2
    if c1 - c0 >= width:
        return r0, r1, [(0, width)]
    span = c1 - c0
    c0 %= width
    if c0 + span <= width:
        return r0, r1, [(c0, c0 + span)]
    return r0, r1, [(c0, width), (0, c0 + span - width)]


def _window(prim: Box | Cylinder, eye: np.ndarray, height: int, width: int, yaw: float = 0.0):
    """The pixel window of a primitive seen from ``eye`` (see :func:`_angular_window`)."""
    if isinstance(prim, Cylinder):
        cx, cy = prim.center[0] - eye[0], prim.center[1] - eye[1]
        dist, r = float(np.hypot(cx, cy)), prim.radius
        corners = None
        if dist > r:
            half, ang = np.arcsin(r / dist), np.arctan2(cy, cx)
            corners = np.array(
                [[np.cos(ang - half), np.sin(ang - half)], [np.cos(ang + half), np.sin(ang + half)]]
            )
        return _angular_window(
            corners,
            prim.z0 - eye[2],
            prim.z1 - eye[2],
            max(dist - r, 0.0),
            dist + r,
            height,
            width,
            yaw,
        )
    c = np.asarray(prim.center) - eye
    hx, hy, hz = prim.half
    cs, sn = np.cos(prim.yaw), np.sin(prim.yaw)
    local = np.array([[sx * hx, sy * hy] for sx in (-1, 1) for sy in (-1, 1)])
    corners = np.stack(
        [c[0] + cs * local[:, 0] - sn * local[:, 1], c[1] + sn * local[:, 0] + cs * local[:, 1]], 1
    )
    px, py = -cs * c[0] - sn * c[1], sn * c[0] - cs * c[1]  # the eye in the box's frame
    rmin = float(np.hypot(px - np.clip(px, -hx, hx), py - np.clip(py, -hy, hy)))
    rmax = float(np.max(np.hypot(corners[:, 0], corners[:, 1])))
    corners = None if rmin < 1e-6 else corners
    return _angular_window(corners, c[2] - hz, c[2] + hz, rmin, rmax, height, width, yaw)


def _intersect(prim: Box | Cylinder, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    return (
        _hit_cylinder(prim, origin, dirs)
        if isinstance(prim, Cylinder)
        else _hit_box(prim, origin, dirs)
    )


def _cast_primitives(
    room: Room, dirs: np.ndarray, cam: np.ndarray, t: np.ndarray, prim: np.ndarray, yaw: float
) -> None:
    """Intersect every box and cylinder, updating the nearest distance ``t`` and ``prim`` in place.

    ``prim`` holds 6 + i for the i-th of ``[*room.boxes, *room.cylinders]``.
    Each primitive is only tested in the pixel window that can see it.
    """
    height, width = t.shape
    for i, p in enumerate([*room.boxes, *room.cylinders]):
        r0, r1, spans = _window(p, cam, height, width, yaw)
        for c0, c1 in spans:
            sl = (slice(r0, r1), slice(c0, c1))
            th = _intersect(p, cam, dirs[sl])
            better = th < t[sl]
            t[sl] = np.where(better, th, t[sl])
            prim[sl] = np.where(better, 6 + i, prim[sl])


def _hit_box(box: Box, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Entry distance into the box along rays (..., 3) from one origin (inf where missed)."""
    o = np.asarray(origin, dtype=np.float32) - np.asarray(box.center, dtype=np.float32)
    ox, oy, oz = o[0], o[1], o[2]
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    if box.yaw != 0.0:
        cs, sn = np.float32(np.cos(box.yaw)), np.float32(np.sin(box.yaw))
        ox, oy = cs * ox + sn * oy, -sn * ox + cs * oy
        dx, dy = cs * dx + sn * dy, -sn * dx + cs * dy
    near = far = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for o_a, d_a, h in ((ox, dx, box.half[0]), (oy, dy, box.half[1]), (oz, dz, box.half[2])):
            inv = np.float32(1.0) / d_a
            t1 = (np.float32(-h) - o_a) * inv
            t2 = (np.float32(h) - o_a) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            near = lo if near is None else np.maximum(near, lo)
            far = hi if far is None else np.minimum(far, hi)
    return np.where((near <= far) & (near > 1e-4), near, np.float32(np.inf))


def _hit_cylinder(cyl: Cylinder, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Distance to the outside of a vertical cylinder along rays from one origin (inf where missed)."""
    ox = np.float32(origin[0] - cyl.center[0])
    oy = np.float32(origin[1] - cyl.center[1])
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    a = dx * dx + dy * dy
    bh = ox * dx + oy * dy
    c = ox * ox + oy * oy - np.float32(cyl.radius**2)
    disc = bh * bh - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        th = (-bh - np.sqrt(np.maximum(disc, 0))) / a
    z = np.float32(origin[2]) + th * dz
    hit = (disc > 0) & (a > 1e-12) & (th > 1e-4) & (z >= cyl.z0) & (z <= cyl.z1)
    return np.where(hit, th, np.float32(np.inf)).astype(np.float32)


def _surface_normals(
    room: Room, points: np.ndarray, cam: np.ndarray, prim: np.ndarray
) -> np.ndarray:
    """World-axis unit normals (H, W, 3) of the hit surfaces, facing into the room / the camera."""
    normals = np.zeros(points.shape, dtype=np.float32)
    for face in range(6):
        m = prim == face
        axis, sign = face // 2, (1.0 if face % 2 == 0 else -1.0)
        normals[m, axis] = sign
    for i, box in enumerate(room.boxes):
        m = prim == 6 + i
        if not m.any():
            continue
        rel = points[m] + (cam - np.asarray(box.center)).astype(np.float32)
        cs, sn = np.cos(box.yaw), np.sin(box.yaw)
        lx, ly = cs * rel[:, 0] + sn * rel[:, 1], -sn * rel[:, 0] + cs * rel[:, 1]
        scaled = np.abs(np.stack([lx / box.half[0], ly / box.half[1], rel[:, 2] / box.half[2]], 1))
        axis = np.argmax(scaled, axis=1)
        local = np.zeros_like(rel)
        local[np.arange(len(rel)), axis] = np.sign(
            np.stack([lx, ly, rel[:, 2]], 1)[np.arange(len(rel)), axis]
        )
        n = np.stack(
            [cs * local[:, 0] - sn * local[:, 1], sn * local[:, 0] + cs * local[:, 1], local[:, 2]],
            1,
        )
        normals[m] = n
    base = 6 + len(room.boxes)
    for j, cyl in enumerate(room.cylinders):
        m = prim == base + j
        if not m.any():
            continue
        p = points[m] + cam.astype(np.float32)
        n = np.zeros_like(p)
        n[:, 0], n[:, 1] = p[:, 0] - cyl.center[0], p[:, 1] - cyl.center[1]
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        normals[m] = n
    return normals


def _materials(room: Room) -> list[Material]:
    return (
        [s[2] for s in room.surfaces]
        + [b.material for b in room.boxes]
        + [c.material for c in room.cylinders]
    )


def _hash2(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) for integer lattice points."""
    h = (ix.astype(np.int64) * 73856093) ^ (iy.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return ((h & 0xFFFFFF).astype(np.float32)) / np.float32(0x1000000)


def _value_noise(s: np.ndarray, t: np.ndarray, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1)."""
    i, j = np.floor(s), np.floor(t)
    fs, ft = s - i, t - j
    fs, ft = fs * fs * (3 - 2 * fs), ft * ft * (3 - 2 * ft)
    a, b = _hash2(i, j, salt), _hash2(i + 1, j, salt)
    c, d = _hash2(i, j + 1, salt), _hash2(i + 1, j + 1, salt)
    return (a * (1 - fs) + b * fs) * (1 - ft) + (c * (1 - fs) + d * fs) * ft


def _pattern(mat: Material, s: np.ndarray, t: np.ndarray, salt: int) -> np.ndarray:
    """Mixing weight in [0, 1] between a material's two colours at surface coordinates (s, t)."""
    k = 1.0 / mat.scale
    if mat.pattern == "noise":
        return 0.6 * _value_noise(s * k * 4, t * k * 4, salt) + 0.4 * _value_noise(
            s * k * 16, t * k * 16, salt + 1
        )
    if mat.pattern == "planks":
        plank = np.floor(s * k)
        grain = _value_noise(t * 8.0, s * k * 2, salt) * 0.5 + _hash2(plank, plank * 0, salt) * 0.5
        seam = (s * k - plank) < 0.04
        return np.where(seam, 1.0, grain)
    if mat.pattern == "tiles":
        fs, ft = s * k - np.floor(s * k), t * k - np.floor(t * k)
        grout = (fs < 0.03) | (ft < 0.03)
        return np.where(grout, 1.0, 0.25 * _hash2(np.floor(s * k), np.floor(t * k), salt))
    if mat.pattern == "stripes":
        return (np.sin(s * k * 2 * np.pi) > 0.6).astype(np.float32) * 0.8
    if mat.pattern == "shelves":
        shelf = (t * k - np.floor(t * k)) < 0.08
        books = _hash2(np.floor(s * 25.0), np.floor(t * k), salt)
        return np.where(shelf, 0.0, 0.3 + 0.7 * books)
    return 0.15 * _value_noise(s * 2, t * 2, salt)


def _albedo(
    room: Room, world: np.ndarray, normals: np.ndarray, prim: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (H, W, 3) and emitted light (H, W, 3) of every pixel."""
    albedo = np.zeros(world.shape, dtype=np.float32)
    emission = np.zeros(world.shape, dtype=np.float32)
    dominant = np.argmax(np.abs(normals), axis=-1)
    for idx, mat in enumerate(_materials(room)):
        m = prim == idx
        if not m.any():
            continue
        w, dom = world[m], dominant[m]
        s = np.where(dom == 0, w[:, 1], w[:, 0])
        t = np.where(dom == 2, w[:, 1], w[:, 2])
        mix = _pattern(mat, s, t, salt=idx + 7 * room.holes_seed % 1000)[:, None]
        c1, c2 = np.asarray(mat.color, np.float32), np.asarray(mat.color2, np.float32)
        albedo[m] = c1 * (1 - mix) + c2 * mix
        if mat.emission:
            emission[m] = albedo[m] * mat.emission
    return albedo, emission


def _lighting(
    room: Room, points: np.ndarray, normals: np.ndarray, cam: np.ndarray, shadows: bool
) -> np.ndarray:
    """Irradiance (H, W): ambient sky term plus point lights, the first one casting shadows."""
    light = 0.28 + 0.08 * normals[..., 2]
    world = points + cam.astype(np.float32)
    for k, (pos, power) in enumerate(room.lights):
        to_light = np.asarray(pos, np.float32) - world
        dist2 = np.einsum("hwc,hwc->hw", to_light, to_light)
        dist = np.sqrt(dist2)
        cos = np.einsum("hwc,hwc->hw", normals, to_light) / np.maximum(dist, 1e-6)
        term = np.float32(power) * np.maximum(cos, 0) / (np.float32(1.0) + dist2)
        if shadows and k == 0:
            term = term * (1.0 - 0.85 * _shadowed(room, np.asarray(pos, np.float32), world, dist))
        light = light + term
    return light


def _shadowed(room: Room, light: np.ndarray, world: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """1 where the segment light -> surface point is blocked by an object, else 0: (H, W).

    Rays are cast from the light; each primitive is tested only on the pixels whose
    light-centred direction falls in its angular window (on a 1-degree grid).
    """
    dirs = (world - light) / np.maximum(dist, 1e-6)[..., None]
    row, col = direction_to_pixel(dirs, 180, 360)
    blocked = np.zeros(dist.shape, dtype=bool)
    eye = light.astype(np.float64)
    for prim in [*room.boxes, *room.cylinders]:
        r0, r1, spans = _window(prim, eye, 180, 360)
        sel = (row >= r0 - 1) & (row <= r1)
        if spans != [(0, 360)]:
            sel &= np.logical_or.reduce([(col >= c0 - 1) & (col <= c1) for c0, c1 in spans])
        idx = np.nonzero(sel & ~blocked)
        if len(idx[0]):
            blocked[idx] = _intersect(prim, light, dirs[idx]) < dist[idx] - 0.01
    return blocked.astype(np.float32)


def _tone_map(radiance: np.ndarray, seed: int, noise: float) -> np.ndarray:
    """Linear radiance -> sRGB-ish uint8 (never pure black, which datasets reserve for holes)."""
    exposure = 0.9 / max(float(np.percentile(radiance, 97)), 1e-3)
    img = np.clip(radiance * exposure, 0, 1) ** (1 / 2.2) * 255
    if noise:
        img = img + np.random.default_rng(seed).normal(0, 1.2 * noise, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 3, 255).astype(np.uint8)


def _labels(room: Room, prim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Semantic class (index into CLASSES) and instance id of every pixel."""
    table_cls, table_inst = [], []
    for label, inst, _ in room.surfaces:
        table_cls.append(CLASS_INDEX[label])
        table_inst.append(inst)
    for p in [*room.boxes, *room.cylinders]:
        table_cls.append(CLASS_INDEX[p.label])
        table_inst.append(p.instance)
    return np.asarray(table_cls, np.int16)[prim], np.asarray(table_inst, np.int32)[prim]


def _holes(room: Room, height: int, width: int) -> np.ndarray:
    """Valid-data mask: False below the camera (tripod) and in a few random blobs."""
    valid = np.ones((height, width), dtype=bool)
    if room.hole_fraction <= 0:
        return valid
    rng = np.random.default_rng(room.holes_seed)
    valid[int(height * (1 - rng.uniform(0.04, 0.08))) :] = False
    rows, cols = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(0, 3))):
        r = rng.uniform(0.1, 0.9) * height
        c = rng.uniform(0, width)
        radius = np.sqrt(room.hole_fraction * height * width / np.pi / 3) * rng.uniform(0.4, 1.0)
        dc = np.minimum(np.abs(cols - c), width - np.abs(cols - c))  # wraps across the seam
        valid &= ((rows - r) / radius) ** 2 + (dc / (1.6 * radius)) ** 2 > 1
    return valid
