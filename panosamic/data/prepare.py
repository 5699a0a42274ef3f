"""Preparation: a dataset's raw download layout -> the processed layout the loaders read.

Output per sample, in ``OUT/<area or scene>/<sample>/`` (the reference's layout
and encodings): ``rgb.webp`` (lossless), ``depth.png`` (16-bit, raw units),
``depth_mask.webp`` (lossless, RGB 0/255), ``normals.webp`` (lossless; not for
Matterport3D unless computed from depth), and the labels: ``instances.webp``
(Stanford2D3DS, the raw semantic RGB) or ``semantics.png`` (unchanged; ToF-360's
``.npy`` ids as a PNG). Plus ``OUT/cache_samples_file_names.json``,
``OUT/cache_area_depth_statistics.json`` and a copy of the raw ``assets/``. An
evaluation-only dataset (ToF-360) takes d_t from all its samples, so its
``OUT/cache_splits_depth_statistics.json`` is written here too, ready for evaluation.

Every sample is written into a hidden temporary folder and renamed into place,
so an interrupted run leaves only finished samples; a re-run skips them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.atomic import (
    atomic_write_bytes,
    copy_tree,
    remove_stale_temporaries,
    replace_directory,
    staging_directory,
)
from .catalog import TOF360_SCENES, DatasetInfo, dataset_info
from .colors import dataset_palette
from .files import (
    depth_image_as_uint16,
    open_image,
    read_depth16,
    read_json,
    read_mask,
    save_image,
    save_webp_lossless,
    write_dataset_json,
)
from .labels import STANFORD_ASSET_FILES, check_stanford_assets
from .parallel import parallel_map
from .stats import depth_histogram, depth_thresholds, statistics_entry, sum_area_histograms

SAMPLES_CACHE = "cache_samples_file_names.json"
AREA_STATISTICS_CACHE = "cache_area_depth_statistics.json"
THRESHOLDS_CACHE = "cache_splits_depth_statistics.json"
# ToF-360's raw files by role: <scene>/<folder>/<name>_<scene>_equi_<suffix>
TOF360_FILES: dict[str, tuple[str, str]] = {
    "rgb": ("RGB", "rgb.png"),
    "depth": ("depth", "depth.png"),
    "normals": ("normal", "normal.png"),
    "semantics": ("semantics", "semantic.npy"),
}
TARGET_HEIGHT = 512  # --scale auto: 512 x 1024, the paper's training size


@dataclass(frozen=True)
class SampleTask:
    """One sample to prepare (picklable, for the worker processes)."""

    dataset: str
    location: str
    name: str
    inputs: dict[str, str]  # role (rgb, depth, normals, semantics) -> raw file
    out_dir: str
    scale: float | None  # None: auto (height 512)
    overwrite: bool
    want_histogram: bool
    normals_from_depth: bool


@dataclass
class PrepareSummary:
    """What a preparation run did."""

    written: int = 0
    skipped: int = 0
    broken_skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (sample, error)
    samples: dict[str, list[str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- discovery


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def discover_samples(
    name: str,
    raw_root: Path,
    out_root: Path | None = None,
    broken: set[tuple[str, str]] = frozenset(),
) -> tuple[dict[str, list[str]], list[str]]:
    """Scan a raw dataset: ``{area or scene: sorted sample names}`` and the broken ones skipped."""
    if not raw_root.is_dir():
        raise FileNotFoundError(f"raw dataset folder {raw_root} does not exist")
    samples: dict[str, list[str]] = {}
    skipped: list[str] = []
    if name == "stanford2d3ds":
        for area in (d for d in _subdirs(raw_root) if "area_" in d.name):
            rgb_dir = area / "pano" / "rgb"
            if not rgb_dir.is_dir():
                raise FileNotFoundError(f"{rgb_dir} not found: Stanford2D3DS areas need pano/rgb/")
            names = sorted(p.stem.rsplit("_", 1)[0] for p in rgb_dir.glob("*.png"))
            if names:
                samples[area.name] = names
        expected = "area_*/pano/{rgb,depth,normal,semantic}/ and assets/"
    elif name == "tof360":
        for scene in (d for d in _subdirs(raw_root) if d.name in TOF360_SCENES):
            names = _tof360_names(scene)
            if names:
                samples[scene.name] = names
        expected = (
            "<scene>/{RGB,depth,normal,semantics}/<name>_<scene>_equi_"
            "{rgb.png,depth.png,normal.png,semantic.npy} for the scenes " + ", ".join(TOF360_SCENES)
        )
    elif name == "matterport3d":
        out_resolved = out_root.resolve() if out_root is not None else None
        for scene in _subdirs(raw_root):
            if scene.name in ("assets", "processed") or scene.resolve() == out_resolved:
                continue
            names = sorted(p.stem for p in (scene / "rgb").glob("*.jpg"))
            if names:
                samples[scene.name] = names
        expected = "<scene>/rgb/*.jpg, <scene>/depth/*.png, <scene>/semantic/*.png"
    else:
        for scene in (d for d in _subdirs(raw_root) if "scene_" in d.name):
            rendering = scene / "2D_rendering"
            rooms = _subdirs(rendering) if rendering.is_dir() else []
            names = []
            for room in rooms:
                if not (room / "panorama" / "full").is_dir():
                    continue
                if (scene.name, room.name) in broken:
                    skipped.append(f"{scene.name}/{room.name}")
                else:
                    names.append(room.name)
            if names:
                samples[scene.name] = names
        expected = (
            "scene_*/2D_rendering/<room>/panorama/full/{rgb_rawlight,depth,normal,semantic}.png"
        )
    if not samples and not skipped:
        raise FileNotFoundError(f"no {name} samples found in {raw_root}; expected {expected}")
    return samples, skipped


def _tof360_names(scene: Path) -> list[str]:
    """Every sample name that any of a ToF-360 scene's modality folders holds, so that a
    sample missing one of them is reported rather than skipped."""
    names: set[str] = set()
    for folder, suffix in TOF360_FILES.values():
        ending = f"_{scene.name}_equi_{suffix}"
        if (scene / folder).is_dir():
            names |= {
                p.name[: -len(ending)]
                for p in (scene / folder).iterdir()
                if p.name.endswith(ending)
            }
    return sorted(names)


def sample_inputs(name: str, raw_root: Path, location: str, sample: str) -> dict[str, Path]:
    """The raw files of one sample, by role."""
    if name == "tof360":
        scene = raw_root / location
        return {
            role: scene / folder / f"{sample}_{location}_equi_{suffix}"
            for role, (folder, suffix) in TOF360_FILES.items()
        }
    if name == "stanford2d3ds":
        pano = raw_root / location / "pano"
        return {
            "rgb": pano / "rgb" / f"{sample}_rgb.png",
            "depth": pano / "depth" / f"{sample}_depth.png",
            "normals": pano / "normal" / f"{sample}_normals.png",
            "semantics": pano / "semantic" / f"{sample}_semantic.png",
        }
    if name == "matterport3d":
        scene = raw_root / location
        return {
            "rgb": scene / "rgb" / f"{sample}.jpg",
            "depth": scene / "depth" / f"{sample}.png",
            "semantics": scene / "semantic" / f"{sample}.png",
        }
    full = raw_root / location / "2D_rendering" / sample / "panorama" / "full"
    return {
        "rgb": full / "rgb_rawlight.png",
        "depth": full / "depth.png",
        "normals": full / "normal.png",
        "semantics": full / "semantic.png",
    }


def read_broken_rooms(path: Path) -> set[tuple[str, str]]:
    """Structured3D's broken list -> {(scene, room)} of panoramas to skip.

    Entries are paths; only those containing ``panorama/full`` count. A room is
    matched exactly by its ``scene_XXXXX/2D_rendering/<room>`` components (the
    reference's substring test also dropped room 1 when room 10 was broken).
    """
    entries = read_json(path)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of file paths")
    rooms = set()
    for entry in entries:
        parts = Path(str(entry).replace("\\", "/")).parts
        if "panorama/full" not in "/".join(parts) or "2D_rendering" not in parts:
            continue
        i = parts.index("2D_rendering")
        if 0 < i < len(parts) - 1:
            rooms.add((parts[i - 1], parts[i + 1]))
    return rooms


# ----------------------------------------------------------------------------- one sample


def output_size(width: int, height: int, scale: float | None) -> tuple[int, int] | None:
    """(W, H) after resizing, or None to keep the size. ``scale`` None: height 512 (no upscaling)."""
    if scale is None:
        if height <= TARGET_HEIGHT:
            return None
        return round(width * TARGET_HEIGHT / height), TARGET_HEIGHT
    if scale >= 1.0:
        return None
    return int(width * scale), int(height * scale)


def _load_inputs(task: SampleTask) -> dict[str, Image.Image]:
    images: dict[str, Image.Image] = {}
    for role, path in task.inputs.items():
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"sample {task.location}/{task.name}: its {role} file {path} is missing"
            )
        if path.endswith(".npy"):
            images[role] = _label_array_image(path, task)
            continue
        image = open_image(path)
        if role in ("rgb", "normals") or (role == "semantics" and task.dataset == "stanford2d3ds"):
            image = image.convert("RGB")
        elif role == "depth":
            image = depth_image_as_uint16(image, path)
        elif image.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"{path}: expected a grayscale or palette PNG of class indices, got mode {image.mode}"
            )
        images[role] = image
    sizes = {role: im.size for role, im in images.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"sample {task.location}/{task.name}: inputs differ in size {sizes}")
    return images


def _label_array_image(path: str, task: SampleTask) -> Image.Image:
    """A ``.npy`` of (H, W) integer class ids as an 8-bit (ids < 256) or 16-bit image."""
    try:
        ids = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"sample {task.location}/{task.name}: cannot read {path}: {err}") from err
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"sample {task.location}/{task.name}: {path} must hold an (H, W) array of integer "
            f"category ids, got {ids.dtype} {ids.shape}"
        )
    if ids.size and (ids.min() < 0 or ids.max() > 65535):
        raise ValueError(f"sample {task.location}/{task.name}: {path} holds ids outside 0..65535")
    dtype = np.uint8 if ids.size == 0 or ids.max() < 256 else np.uint16
    return Image.fromarray(np.ascontiguousarray(ids, dtype=dtype))


def _write_sample(task: SampleTask, folder: Path, info: DatasetInfo) -> np.ndarray:
    """Convert one sample into ``folder``; returns its depth histogram."""
    images = _load_inputs(task)
    raw_depth = np.asarray(images["depth"])
    mask = Image.fromarray(raw_depth != info.depth_invalid)  # full resolution, mode "1"
    size = output_size(*images["rgb"].size, task.scale)
    if size is not None:
        for role, image in images.items():
            smooth = role in ("rgb", "depth")
            images[role] = image.resize(size, Image.LANCZOS if smooth else Image.NEAREST)
        mask = mask.resize(size, Image.NEAREST)
    save_webp_lossless(images["rgb"], folder / "rgb.webp")
    save_image(images["depth"], folder / "depth.png")
    save_webp_lossless(mask, folder / "depth_mask.webp")
    if "normals" in images:
        save_webp_lossless(images["normals"], folder / "normals.webp")
    if task.dataset == "stanford2d3ds":
        save_webp_lossless(images["semantics"], folder / "instances.webp")
    else:
        save_image(images["semantics"], folder / "semantics.png")
    depth = np.asarray(images["depth"])
    valid = np.asarray(mask, dtype=bool)
    if task.normals_from_depth:
        from .normals import normals_image_from_depth

        normals = normals_image_from_depth(depth.astype(np.float64), valid)
        save_webp_lossless(Image.fromarray(normals), folder / "normals.webp")
    return depth_histogram(depth, valid, info)


def prepare_sample(task: SampleTask) -> tuple[str, np.ndarray | None]:
    """Prepare one sample unless it is already done: ("written" | "skipped", histogram or None)."""
    info = dataset_info(task.dataset)
    final = Path(task.out_dir) / task.location / task.name
    if final.is_dir() and not task.overwrite:
        if not task.want_histogram:
            return "skipped", None
        depth = read_depth16(final / "depth.png")
        return "skipped", depth_histogram(depth, read_mask(final / "depth_mask.webp"), info)
    with staging_directory(final.parent, task.name) as staged:
        histogram = _write_sample(task, staged, info)
        replace_directory(staged, final)
    return "written", histogram


def remove_stale_partials(out_root: Path, locations) -> int:
    """Delete temporary sample folders left by an interrupted run."""
    return sum(
        len(remove_stale_temporaries(out_root / location))
        for location in locations
        if (out_root / location).is_dir()
    )


# ----------------------------------------------------------------------------- whole dataset


def _copy_assets(name: str, raw_root: Path, out_root: Path) -> None:
    raw_assets, out_assets = raw_root / "assets", out_root / "assets"
    if raw_assets.is_dir():
        copy_tree(raw_assets, out_assets)
    if name == "tof360" and not (out_assets / "colors.npy").is_file():
        _write_colors(out_assets / "colors.npy", name)
    if name == "stanford2d3ds" and not all(
        (out_assets / f).is_file() for f in STANFORD_ASSET_FILES
    ):
        check_stanford_assets(raw_assets)


def _write_colors(path: Path, name: str) -> None:
    """``assets/colors.npy`` as Stanford2D3DS ships it, (K + 1, 3) uint8, row 0 for unlabelled:
    ToF-360 comes without one, and the reference's evaluation colours its maps with it."""
    colors = np.concatenate([np.zeros((1, 3), np.uint8), dataset_palette(name)])
    buffer = io.BytesIO()
    np.save(buffer, colors)
    atomic_write_bytes(path, buffer.getvalue())


def _resolve_scale(scale: float | str | None) -> float | None:
    if scale is None or scale == "auto":
        return None
    value = float(scale)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"--scale must be in (0, 1] or 'auto', got {scale!r} (no upscaling)")
    return value


def prepare_dataset(
    name: str,
    raw_root: str | Path,
    out_root: str | Path,
    *,
    scale: float | str | None = "auto",
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    normals_from_depth: bool = False,
    broken_files: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> PrepareSummary:
    """Prepare a whole dataset (see the module docstring). Returns what was done.

    ``scale``: "auto" resizes to height 512 (512 x 1024 for 2:1 panoramas, never
    upscaling); a number in (0, 1] scales like the reference (sizes truncated).
    ``workers``: processes (default: all CPU cores; 1 runs in this process).
    ``broken_files``: Structured3D's list of broken files (default:
    ``RAW/assets/broken_files.json`` when it exists).
    Raises RuntimeError after the run when samples failed (the others are kept).
    """
    info = dataset_info(name)
    raw_root, out_root = Path(raw_root), Path(out_root)
    scale_value = _resolve_scale(scale)
    if normals_from_depth and info.normals_required:
        raise ValueError(
            f"{name} comes with its own normals; to replace them run `panosamic normals --overwrite`"
        )
    if not raw_root.is_dir():
        raise FileNotFoundError(f"raw dataset folder {raw_root} does not exist")
    summary = PrepareSummary()
    samples, fresh = _sample_list(name, raw_root, out_root, overwrite, broken_files, summary)
    out_root.mkdir(parents=True, exist_ok=True)
    _copy_assets(name, raw_root, out_root)
    if fresh:
        write_dataset_json(out_root / SAMPLES_CACHE, samples)
    summary.samples = samples
    remove_stale_partials(out_root, samples)
    stats_path = out_root / AREA_STATISTICS_CACHE
    want_histogram = overwrite or not stats_path.is_file()
    tasks = [
        SampleTask(
            name,
            location,
            sample,
            {k: str(v) for k, v in sample_inputs(name, raw_root, location, sample).items()},
            str(out_root),
            scale_value,
            overwrite,
            want_histogram,
            normals_from_depth,
        )
        for location, names in samples.items()
        for sample in names
    ]
    histograms = _run_tasks(tasks, workers, progress, summary, f"prepare {name}")
    if summary.failed:
        raise RuntimeError(
            f"{len(summary.failed)} of {len(tasks)} samples failed (the others are done; fix "
            f"them and re-run to resume):\n{failure_lines(summary.failed)}"
        )
    if want_histogram:
        statistics = {loc: statistics_entry(histograms[loc], info) for loc in sorted(histograms)}
        write_dataset_json(stats_path, statistics)
        if info.evaluation_only:
            write_dataset_json(out_root / THRESHOLDS_CACHE, evaluation_thresholds(statistics))
    log(
        f"prepared {name}: {summary.written} written, {summary.skipped} already done"
        + (f", {len(summary.broken_skipped)} broken skipped" if summary.broken_skipped else "")
        + f" -> {out_root}"
    )
    return summary


def failure_lines(failed: list[tuple[str, str]], shown: int = 10) -> str:
    """One indented line per failed sample (the first ``shown``), each naming the sample."""
    lines = [
        error if error.startswith(f"sample {sample}:") else f"sample {sample}: {error}"
        for sample, error in failed[:shown]
    ]
    if len(failed) > shown:
        lines.append(f"... and {len(failed) - shown} more")
    return "\n".join(f"  {line}" for line in lines)


def evaluation_thresholds(statistics: dict[str, list]) -> list[float]:
    """d_t for every ratio of :data:`DEPTH_INLIER_RATIOS` from all areas' histograms (the
    quantile rule of the training split, applied to the whole of an evaluation-only dataset)."""
    return depth_thresholds(*sum_area_histograms(statistics, sorted(statistics)))


def _sample_list(
    name: str,
    raw_root: Path,
    out_root: Path,
    overwrite: bool,
    broken_files,
    summary: PrepareSummary,
) -> tuple[dict[str, list[str]], bool]:
    """The cached sample list, or a fresh scan of the raw data (True: to be cached)."""
    cache = out_root / SAMPLES_CACHE
    if cache.is_file() and not overwrite:
        samples = read_json(cache)
        if not isinstance(samples, dict):
            raise ValueError(f"{cache}: expected an object area -> list of sample names")
        return {str(k): [str(s) for s in v] for k, v in sorted(samples.items())}, False
    broken: set[tuple[str, str]] = set()
    if name == "structured3d":
        path = Path(broken_files) if broken_files else raw_root / "assets" / "broken_files.json"
        if broken_files and not path.is_file():
            raise FileNotFoundError(f"broken-files list {path} does not exist")
        if path.is_file():
            broken = read_broken_rooms(path)
    samples, summary.broken_skipped = discover_samples(name, raw_root, out_root, broken)
    if not samples:
        raise FileNotFoundError(f"every {name} sample in {raw_root} is listed as broken")
    return samples, True


def _run_tasks(tasks, workers, progress, summary, desc) -> dict[str, np.ndarray]:
    """Run ``prepare_sample`` over the tasks, summing the histograms per location."""
    histograms: dict[str, np.ndarray] = {}
    for task, result, error in parallel_map(
        prepare_sample, tasks, workers=workers, progress=progress, desc=desc
    ):
        if error is not None:
            summary.failed.append((f"{task.location}/{task.name}", str(error)))
            continue
        status, histogram = result
        if status == "written":
            summary.written += 1
        else:
            summary.skipped += 1
        if histogram is not None:
            prev = histograms.get(task.location)
            histograms[task.location] = histogram if prev is None else prev + histogram
    return histograms
