"""Synthetic panoramas written in each dataset's raw download layout, for tests and demos.

- :func:`render_room` renders one random room in memory (arrays, exact labels).
- :func:`write_synthetic_dataset` writes N samples of a dataset in its raw layout,
  label encodings and side files included (Stanford2D3DS ``assets/``,
  Structured3D ``assets/broken_files.json``).
- :func:`make_prepared_dataset` goes synth -> prepare in one call (small sizes for tests).
- :func:`synthetic_sample` re-renders sample ``index`` of a synthetic dataset
  exactly, and :func:`expected_semantics` gives its ground-truth class indices in
  the dataset's class list: the truth that tests compare the loaders against.

Samples are spread over the areas/scenes so that, from three samples on, every
fold has training and held-out data.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.atomic import atomic_write_bytes, save_image
from .catalog import (
    MATTERPORT_TEST,
    MATTERPORT_TRAIN,
    MATTERPORT_VALID,
    STANFORD_CLASSES,
    STRUCTURED3D_TEST,
    STRUCTURED3D_TRAIN,
    STRUCTURED3D_VALID,
    TOF360_IGNORE_IDS,
    TOF360_SCENES,
    dataset_info,
)
from .colors import make_palette
from .files import save_png16, write_dataset_json
from .normals import encode_normals
from .parallel import parallel_map
from .render import ALL_KINDS, CLASSES, Rendering, generate_room, render

# Internal renderer class -> the dataset's class name.
SYNTH_CLASS_MAP: dict[str, dict[str, str]] = {
    "stanford2d3ds": {c: c for c in STANFORD_CLASSES},
    "matterport3d": {
        "wall": "wall", "floor": "floor", "ceiling": "ceiling", "door": "door",
        "window": "window", "table": "table", "chair": "chair", "sofa": "sofa",
        "bookcase": "shelving", "cabinet": "furniture", "bed": "bed", "board": "objects",
        "picture": "picture", "column": "objects", "beam": "objects", "clutter": "objects",
    },
    "structured3d": {
        "wall": "wall", "floor": "floor", "ceiling": "ceiling", "door": "door",
        "window": "window", "table": "table", "chair": "chair", "sofa": "sofa",
        "bookcase": "bookshelf", "cabinet": "cabinet", "bed": "bed", "board": "whiteboard",
        "picture": "picture", "column": "otherstructure", "beam": "otherstructure",
        "clutter": "otherprop",
    },
    "tof360": {
        **{c: c for c in STANFORD_CLASSES}, "cabinet": "clutter", "bed": "clutter",
        "picture": "clutter",
    },
}  # fmt: skip
# Matterport: the mpcat40 ids an instance of each internal class may be written as
# (all decode to the class above; several ids exercise the many-to-one remap).
MATTERPORT_RAW_IDS: dict[str, tuple[int, ...]] = {
    "wall": (1,), "floor": (2,), "ceiling": (17,), "door": (4,), "window": (9, 32),
    "table": (5,), "chair": (3, 19), "sofa": (10,), "bookcase": (31,), "cabinet": (7, 13, 36),
    "bed": (11,), "board": (35,), "picture": (6,), "column": (24,), "beam": (29,),
    "clutter": (8, 14, 22, 28, 37, 38, 39, 40),
}  # fmt: skip
# ToF-360: the ids each internal class may be written as (several per class, and ids the
# remap does not list for clutter, cabinet, bed and picture, which all decode to clutter).
TOF360_RAW_IDS: dict[str, tuple[int, ...]] = {
    "wall": (1, 40), "floor": (3, 18), "ceiling": (2, 20, 42), "door": (7,), "window": (8,),
    "table": (12,), "chair": (5,), "sofa": (4,), "bookcase": (31,), "board": (26,),
    "column": (14,), "beam": (17,), "clutter": (6, 23, 35, 50), "cabinet": (13,), "bed": (11,),
    "picture": (9,),
}  # fmt: skip
SYNTH_HOLES = {"stanford2d3ds": 0.004, "matterport3d": 0.004, "structured3d": 0.0, "tof360": 0.004}
STANFORD_MISSING_RGB = (13, 13, 13)  # the dataset's "no label" colour
STANFORD_AREA_ORDER = ("area_1", "area_5a", "area_2", "area_5b", "area_3", "area_4", "area_6")


@dataclass(frozen=True)
class SyntheticSample:
    """Where sample ``index`` of a synthetic dataset goes, and its room."""

    index: int
    location: str
    name: str
    seed: int


def synth_kinds(name: str) -> frozenset[str]:
    """The object kinds the renderer places for a dataset (those it has labels for)."""
    return frozenset(SYNTH_CLASS_MAP[name]) & ALL_KINDS


def render_room(
    seed: int = 0,
    height: int = 512,
    width: int = 1024,
    *,
    dataset: str | None = None,
    holes: float = 0.0,
    yaw: float = 0.0,
    shadows: bool = True,
    noise: float = 1.0,
) -> Rendering:
    """Render one random room in memory (``dataset`` restricts objects to its classes)."""
    kinds = synth_kinds(dataset) if dataset else ALL_KINDS
    room = generate_room(seed, kinds, holes)
    return render(room, height, width, yaw=yaw, shadows=shadows, noise=noise)


def _groups(name: str) -> list[tuple[str, ...]]:
    if name == "stanford2d3ds":
        return [(area,) for area in STANFORD_AREA_ORDER]
    if name == "matterport3d":
        return [MATTERPORT_TRAIN, MATTERPORT_VALID, MATTERPORT_TEST]
    if name == "tof360":
        return [(scene,) for scene in TOF360_SCENES]
    return [STRUCTURED3D_TRAIN, STRUCTURED3D_VALID, STRUCTURED3D_TEST]


def plan_samples(name: str, count: int, seed: int, per_location: int = 1) -> list[SyntheticSample]:
    """Locations, names and room seeds of ``count`` synthetic samples (deterministic).

    Consecutive slots cycle over the splits (Stanford: over the areas), and
    ``per_location`` samples share an area or scene.
    """
    dataset_info(name)
    if count < 0 or per_location < 1:
        raise ValueError(f"count must be >= 0 and per_location >= 1, got {count}, {per_location}")
    groups = _groups(name)
    plan = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        slot = i // per_location
        group = groups[slot % len(groups)]
        location = group[(slot // len(groups)) % len(group)]
        if name == "stanford2d3ds":
            room = f"{rng.choice(['office', 'hallway', 'conferenceRoom', 'lounge'])}_{i + 1}"
            sample_name = f"camera_{rng.bytes(16).hex()}_{room}_frame_equirectangular_domain"
        elif name == "matterport3d":
            sample_name = rng.bytes(16).hex()
        elif name == "tof360":
            sample_name = f"{i:04d}"
        else:
            sample_name = str(int(rng.integers(100000, 1000000)) * 10 + i % 10)
        plan.append(SyntheticSample(i, location, sample_name, int(rng.integers(2**31))))
    return plan


def synthetic_sample(
    name: str, seed: int, index: int, height: int = 512, width: int = 1024
) -> Rendering:
    """The exact rendering behind sample ``index`` of ``write_synthetic_dataset(name, ..., seed)``."""
    sample = plan_samples(name, index + 1, seed)[index]
    room = generate_room(sample.seed, synth_kinds(name), SYNTH_HOLES[name])
    return render(room, height, width)


def expected_semantics(name: str, rendering: Rendering) -> np.ndarray:
    """Ground-truth class indices (H, W) int64 in the dataset's class list; -1 in holes."""
    class_names = dataset_info(name).class_names
    table = np.array(
        [class_names.index(SYNTH_CLASS_MAP[name].get(c, class_names[0])) for c in CLASSES]
    )
    return np.where(rendering.semantics >= 0, table[np.maximum(rendering.semantics, 0)], -1)


# ----------------------------------------------------------------------------- raw writers


@dataclass(frozen=True)
class _WriteTask:
    dataset: str
    raw_root: str
    sample: SyntheticSample
    height: int
    width: int
    index_base: int  # Stanford: global semantic_labels.json index of the room's instance 1
    broken: bool


def _write_task(task: _WriteTask) -> None:
    name, s = task.dataset, task.sample
    room = generate_room(s.seed, synth_kinds(name), SYNTH_HOLES[name])
    r = render(room, task.height, task.width)
    root = Path(task.raw_root)
    if name == "stanford2d3ds":
        _write_stanford(root, s, r, task.index_base)
    elif name == "matterport3d":
        _write_matterport(root, s, r)
    elif name == "tof360":
        _write_tof360(root, s, r)
    else:
        _write_structured3d(root, s, r, task.broken)


def _write_stanford(root: Path, s: SyntheticSample, r: Rendering, index_base: int) -> None:
    pano = root / s.location / "pano"
    stem = s.name
    save_image(Image.fromarray(r.rgb), pano / "rgb" / f"{stem}_rgb.png")
    raw = np.where(r.valid, np.clip(np.rint(r.depth * 512.0), 0, 65534), 65535)
    save_png16(raw.astype(np.uint16), pano / "depth" / f"{stem}_depth.png")
    save_image(
        Image.fromarray(encode_normals(r.normals, r.valid)), pano / "normal" / f"{stem}_normals.png"
    )
    index = np.where(r.instances > 0, r.instances + index_base - 1, 0)
    sem = np.stack([np.zeros_like(index), index >> 8, index & 255], -1).astype(np.uint8)
    sem[~r.valid] = STANFORD_MISSING_RGB
    save_image(Image.fromarray(sem), pano / "semantic" / f"{stem}_semantic.png")


def _write_matterport(root: Path, s: SyntheticSample, r: Rendering) -> None:
    scene = root / s.location
    save_image(Image.fromarray(r.rgb), scene / "rgb" / f"{s.name}.jpg", quality=95)
    raw = np.where(r.valid, np.clip(np.rint(r.depth * 4000.0), 1, 65535), 0)
    save_png16(raw.astype(np.uint16), scene / "depth" / f"{s.name}.png")
    rng = np.random.default_rng(s.seed)
    ids = [0] + [int(rng.choice(MATTERPORT_RAW_IDS[label])) for label in r.instance_labels]
    sem = np.asarray(ids, dtype=np.uint8)[r.instances]
    save_image(Image.fromarray(sem), scene / "semantic" / f"{s.name}.png")  # 8-bit "L"


def _write_tof360(root: Path, s: SyntheticSample, r: Rendering) -> None:
    """``<scene>/{RGB,depth,normal,semantics}/<name>_<scene>_equi_*``: 1/512 m depth (0 = no
    reading), the dataset's own category ids in a ``.npy`` (holes: an ignored id)."""
    scene, stem = root / s.location, f"{s.name}_{s.location}_equi"
    save_image(Image.fromarray(r.rgb), scene / "RGB" / f"{stem}_rgb.png")
    raw = np.where(r.valid, np.clip(np.rint(r.depth * 512.0), 1, 65535), 0)
    save_png16(raw.astype(np.uint16), scene / "depth" / f"{stem}_depth.png")
    normals = encode_normals(r.normals, r.valid)
    save_image(Image.fromarray(normals), scene / "normal" / f"{stem}_normal.png")
    rng = np.random.default_rng(s.seed)
    ids = [int(rng.choice(TOF360_IGNORE_IDS))]
    ids += [int(rng.choice(TOF360_RAW_IDS[label])) for label in r.instance_labels]
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(ids, dtype=np.uint8)[r.instances])
    atomic_write_bytes(scene / "semantics" / f"{stem}_semantic.npy", buffer.getvalue())


def _write_structured3d(root: Path, s: SyntheticSample, r: Rendering, broken: bool) -> None:
    full = root / s.location / "2D_rendering" / s.name / "panorama" / "full"
    rgb_path = full / "rgb_rawlight.png"
    save_image(Image.fromarray(r.rgb), rgb_path)
    if broken:  # a truncated file, as in the real dataset's broken list
        atomic_write_bytes(rgb_path, rgb_path.read_bytes()[:100])
    raw = np.where(r.valid, np.clip(np.rint(r.depth * 1000.0), 1, 65535), 0)
    save_png16(raw.astype(np.uint16), full / "depth.png")
    save_image(Image.fromarray(encode_normals(r.normals, r.valid)), full / "normal.png")
    sem = (expected_semantics("structured3d", r) + 1).astype(np.uint8)
    image = Image.frombytes("P", (sem.shape[1], sem.shape[0]), sem.tobytes())
    palette = np.zeros((256, 3), np.uint8)
    palette[1:41] = make_palette(40)
    image.putpalette(palette.ravel().tolist())
    save_image(image, full / "semantic.png")


def _write_stanford_assets(root: Path, entries: list[str]) -> None:
    assets = root / "assets"
    write_dataset_json(assets / "semantic_labels.json", entries)
    name2label = {"<UNK>": 0, **{c: i + 1 for i, c in enumerate(STANFORD_CLASSES)}}
    write_dataset_json(assets / "name2label.json", name2label)
    colors = np.concatenate([np.zeros((1, 3), np.uint8), make_palette(len(STANFORD_CLASSES))])
    buffer = io.BytesIO()
    np.save(buffer, colors)
    atomic_write_bytes(assets / "colors.npy", buffer.getvalue())


def write_synthetic_dataset(
    name: str,
    raw_root: str | Path,
    count: int,
    seed: int = 0,
    height: int = 512,
    width: int = 1024,
    *,
    per_location: int = 1,
    broken: int = 0,
    workers: int | None = 1,
    progress: bool = False,
) -> list[SyntheticSample]:
    """Write ``count`` synthetic samples of ``name`` in its raw download layout.

    Stanford2D3DS also gets ``assets/`` (semantic_labels.json, name2label.json,
    colors.npy). Structured3D: the last ``broken`` rooms get a truncated RGB file
    and are listed in ``assets/broken_files.json`` (written whenever ``broken`` > 0).
    """
    if width != 2 * height or height < 2:
        raise ValueError(f"panoramas are 2:1; got height {height}, width {width}")
    if broken and name != "structured3d":
        raise ValueError("broken samples are a Structured3D feature")
    if not 0 <= broken <= count:
        raise ValueError(f"broken must be in 0..count, got {broken}")
    raw_root = Path(raw_root)
    plan = plan_samples(name, count, seed, per_location)
    bases, entries = [], ["<UNK>_0_<UNK>_0_0"]
    for s in plan:
        bases.append(len(entries))
        if name == "stanford2d3ds":
            room = generate_room(s.seed, synth_kinds(name), SYNTH_HOLES[name])
            room_name = s.name.split("_")[2:4]
            area_num = s.location.removeprefix("area_")
            entries += [
                f"{label}_{k + 1}_{room_name[0]}_{room_name[1]}_{area_num}"
                for k, label in enumerate(room.instances)
            ]
    if len(entries) > 65536:
        raise ValueError(
            f"{len(entries)} Stanford instances exceed the 16-bit label index; write fewer samples"
        )
    tasks = [
        _WriteTask(name, str(raw_root), s, height, width, bases[i], i >= count - broken)
        for i, s in enumerate(plan)
    ]
    for _, _, error in parallel_map(
        _write_task, tasks, workers=workers, progress=progress, desc=f"synth {name}"
    ):
        if error is not None:
            raise error
    if name == "stanford2d3ds":
        _write_stanford_assets(raw_root, entries)
    if broken:
        listed = [
            f"{t.sample.location}/2D_rendering/{t.sample.name}/panorama/full/rgb_rawlight.png"
            for t in tasks
            if t.broken
        ]
        write_dataset_json(raw_root / "assets" / "broken_files.json", listed)
    return plan


def make_prepared_dataset(
    name: str,
    root: str | Path,
    count: int = 4,
    seed: int = 0,
    height: int = 64,
    width: int = 128,
    *,
    scale: float | str = "auto",
    per_location: int = 1,
    workers: int | None = 1,
) -> Path:
    """synth -> prepare in one call: raw data in ``root/raw``, returns ``root/prepared``."""
    from .prepare import prepare_dataset

    root = Path(root)
    write_synthetic_dataset(
        name, root / "raw", count, seed, height, width, per_location=per_location, workers=workers
    )
    prepared = root / "prepared"
    prepare_dataset(
        name,
        root / "raw",
        prepared,
        scale=scale,
        workers=workers,
        progress=False,
        log=lambda _: None,
    )
    return prepared


def describe(plan: list[SyntheticSample]) -> str:
    """A short JSON summary of where samples went (for the CLI)."""
    by_location: dict[str, int] = {}
    for s in plan:
        by_location[s.location] = by_location.get(s.location, 0) + 1
    return json.dumps(by_location)
