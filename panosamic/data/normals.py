"""Surface normals: computed from equirectangular depth, encoded as images, compared.

Normals are unit vectors in the camera frame of :mod:`panosamic.data.sphere`
(x forward, y left, z up), pointing towards the camera. The image encoding is
the one of Stanford2D3DS and Structured3D: ``rgb = round((n + 1) * 127.5)``
with channels (R, G, B) = (x, y, z); pixels without a normal are #808080.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.atomic import save_image
from .files import read_depth16, read_json, read_mask, save_webp_lossless
from .parallel import parallel_map
from .sphere import pixel_directions

MISSING_NORMAL_RGB = 128  # #808080: "no normal here" (Stanford2D3DS's code for missing mesh)


def normals_from_depth(
    depth: np.ndarray, valid: np.ndarray | None = None, smooth: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Surface normals of an equirectangular depth map.

    Every pixel is back-projected along its ray (``point = depth * direction``);
    the normal is the cross product of a horizontal and a vertical tangent.
    Each tangent is a one-sided difference to the neighbour whose depth is
    closer to the pixel's own (so depth edges do not blur normals across
    objects); the horizontal neighbours wrap across the 0/360 degree seam,
    the vertical ones stop at the poles. Depth is scale-free here: any unit works.
    ``smooth`` > 0 then averages each normal with the neighbours within that
    radius whose normals agree with it to 25 degrees (quantised depth gets
    noisy normals otherwise; surfaces and creases stay sharp).

    Args:
        depth: (H, W) distance from the camera centre along each ray (not z-depth).
        valid: optional (H, W) bool; pixels that are False, not finite or <= 0 are invalid.
        smooth: radius in pixels of the agreement-weighted average (0: off).

    Returns:
        normals (H, W, 3) float32 unit vectors facing the camera (0 where invalid),
        and the (H, W) bool mask of pixels that got a normal.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D (H, W) array, got shape {depth.shape}")
    height, width = depth.shape
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        if valid.shape != depth.shape:
            raise ValueError(f"valid mask shape {valid.shape} differs from depth {depth.shape}")
        ok &= valid.astype(bool)
    depth = np.where(ok, depth, 0.0)
    points = depth[..., None] * pixel_directions(height, width)

    # Horizontal neighbours wrap around the seam.
    tangent_u, ok_u = _one_sided_tangent(
        points,
        depth,
        ok,
        np.roll(points, -1, 1),
        np.roll(depth, -1, 1),
        np.roll(ok, -1, 1),
        np.roll(points, 1, 1),
        np.roll(depth, 1, 1),
        np.roll(ok, 1, 1),
    )
    # Vertical neighbours: none above the top row or below the bottom row.
    below_p, below_d, below_ok = _shift_rows(points, depth, ok, -1)
    above_p, above_d, above_ok = _shift_rows(points, depth, ok, 1)
    tangent_v, ok_v = _one_sided_tangent(
        points, depth, ok, below_p, below_d, below_ok, above_p, above_d, above_ok
    )
    normals = np.cross(tangent_u, tangent_v)
    norm = np.linalg.norm(normals, axis=-1)
    good = ok & ok_u & ok_v & (norm > 1e-12 * np.maximum(depth, 1e-12) ** 2)
    normals = normals / np.where(good, norm, 1.0)[..., None]
    facing_away = np.einsum("hwc,hwc->hw", normals, points) > 0
    normals[facing_away] *= -1
    normals[~good] = 0.0
    if smooth > 0:
        normals = _smooth_normals(normals, smooth)
    return normals.astype(np.float32), good


def _smooth_normals(normals: np.ndarray, radius: int, min_cos: float = 0.9) -> np.ndarray:
    """Average unit normals (H, W, 3) over a (2r+1)^2 window with agreeing neighbours only.

    Columns wrap around the seam; rows do not. Zero vectors (invalid) stay zero
    and contribute nothing.
    """
    height = normals.shape[0]
    total = np.zeros_like(normals)
    for dv in range(-radius, radius + 1):
        rows = np.roll(normals, -dv, 0)
        if dv > 0:
            rows[height - dv :] = 0.0
        elif dv < 0:
            rows[:-dv] = 0.0
        for du in range(-radius, radius + 1):
            other = np.roll(rows, -du, 1)
            agree = np.einsum("hwc,hwc->hw", normals, other) >= min_cos
            total += other * agree[..., None]
    norm = np.linalg.norm(total, axis=-1, keepdims=True)
    return np.where(norm > 0, total / np.maximum(norm, 1e-12), 0.0)


def _shift_rows(
    points: np.ndarray, depth: np.ndarray, ok: np.ndarray, step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbour ``step`` rows away (step -1: the row below), invalid past the border."""
    p, d, o = np.roll(points, step, 0), np.roll(depth, step, 0), np.roll(ok, step, 0).copy()
    if step < 0:
        o[step:] = False
    else:
        o[:step] = False
    return p, d, o


def _one_sided_tangent(
    points: np.ndarray,
    depth: np.ndarray,
    ok: np.ndarray,
    next_p: np.ndarray,
    next_d: np.ndarray,
    next_ok: np.ndarray,
    prev_p: np.ndarray,
    prev_d: np.ndarray,
    prev_ok: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Tangent pointing from the previous to the next neighbour, from the smoother side."""
    forward = next_p - points
    backward = points - prev_p
    use_forward = next_ok & (~prev_ok | (np.abs(next_d - depth) <= np.abs(depth - prev_d)))
    tangent = np.where(use_forward[..., None], forward, backward)
    return tangent, ok & (next_ok | prev_ok)


def encode_normals(normals: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Unit normals (H, W, 3) -> uint8 image (H, W, 3); invalid pixels become #808080."""
    rgb = np.clip(np.rint((np.asarray(normals, dtype=np.float64) + 1.0) * 127.5), 0, 255)
    rgb = rgb.astype(np.uint8)
    if valid is not None:
        rgb[~valid] = MISSING_NORMAL_RGB
    return rgb


def decode_normals(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (or float 0..255) normals image (H, W, 3) -> unit vectors (H, W, 3) and valid mask.

    Pixels equal to #808080 in all channels, or whose decoded vector is near zero,
    are invalid (vector 0).
    """
    rgb = np.asarray(rgb)
    vectors = rgb.astype(np.float64) / 127.5 - 1.0
    norm = np.linalg.norm(vectors, axis=-1)
    missing = np.all(np.rint(rgb) == MISSING_NORMAL_RGB, axis=-1) | (norm < 0.5)
    vectors = vectors / np.where(missing, 1.0, norm)[..., None]
    vectors[missing] = 0.0
    return vectors.astype(np.float32), ~missing


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between unit vectors (..., 3) a and b."""
    cos = np.clip(np.einsum("...c,...c->...", a.astype(np.float64), b.astype(np.float64)), -1, 1)
    return np.degrees(np.arccos(cos))


def normals_image_from_depth(
    depth: np.ndarray, valid: np.ndarray | None = None, smooth: int = 1
) -> np.ndarray:
    """Depth (H, W) -> encoded normals image (H, W, 3) uint8, ready to save as ``normals.webp``."""
    normals, good = normals_from_depth(depth, valid, smooth)
    return encode_normals(normals, good)


# ----------------------------------------------------------------------------- files


def _prepared_sample_folders(root: Path) -> list[Path]:
    """Sample folders of a prepared dataset: from its sample cache, else every folder with depth.png."""
    cache = root / "cache_samples_file_names.json"
    if cache.is_file():
        listing = read_json(cache)
        folders = [root / loc / name for loc, names in sorted(listing.items()) for name in names]
        return [f for f in folders if f.is_dir()]
    return sorted(p.parent for p in root.glob("*/*/depth.png") if not p.parent.name.startswith("."))


def _write_sample_normals(task: tuple[str, int]) -> str:
    folder, smooth = Path(task[0]), task[1]
    depth = read_depth16(folder / "depth.png").astype(np.float64)
    image = normals_image_from_depth(depth, read_mask(folder / "depth_mask.webp"), smooth)
    save_webp_lossless(Image.fromarray(image), folder / "normals.webp")
    return "written"


def write_dataset_normals(
    root: str | Path,
    *,
    overwrite: bool = False,
    smooth: int = 1,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[int, int]:
    """Write ``normals.webp`` from depth for every sample of a prepared dataset.

    Samples that already have normals are skipped unless ``overwrite``. Each file
    is written atomically, so the command can be interrupted and re-run.
    Returns (written, skipped).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"prepared dataset folder {root} does not exist")
    folders = _prepared_sample_folders(root)
    if not folders:
        raise FileNotFoundError(f"no prepared samples (folders with depth.png) found in {root}")
    todo = [(str(f), smooth) for f in folders if overwrite or not (f / "normals.webp").is_file()]
    failed = []
    for (folder, _), _, error in parallel_map(
        _write_sample_normals, todo, workers=workers, progress=progress, desc="normals"
    ):
        if error is not None:
            failed.append(f"{folder}: {error}")
    if failed:
        raise RuntimeError(f"{len(failed)} samples failed, first: {failed[0]}")
    return len(todo), len(folders) - len(todo)


def read_depth_file(path: str | Path, invalid_value: float = 0) -> tuple[np.ndarray, np.ndarray]:
    """A depth map (16-bit PNG, or float .npy) -> (depth (H, W) float64, valid (H, W) bool)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"missing file {path}")
        depth = np.load(path).astype(np.float64)
        if depth.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D depth array, got shape {depth.shape}")
    else:
        depth = read_depth16(path).astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0) & (depth != invalid_value)
    return depth, valid


def write_normals_image(
    depth_path: str | Path, out_path: str | Path, *, invalid_value: float = 0, smooth: int = 1
) -> float:
    """Normals image (encoded) from one depth file; returns the fraction of pixels with a normal."""
    depth, valid = read_depth_file(depth_path, invalid_value)
    normals, good = normals_from_depth(depth, valid, smooth)
    save_image(Image.fromarray(encode_normals(normals, good)), out_path)
    return float(good.mean())
