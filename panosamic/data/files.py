"""Reading the image and JSON files of raw and prepared datasets (writing: :mod:`panosamic.utils.atomic`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..utils.atomic import save_image, write_json


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to rebuild it") from err


def write_dataset_json(path: str | Path, data: Any) -> None:
    """A dataset's JSON file (caches, labels), atomically and byte for byte as the reference
    writes them: ``json.dumps`` output, Infinity allowed (a class that never occurs)."""
    write_json(path, data, indent=None, allow_nan=True)


def save_webp_lossless(image: Image.Image, path: str | Path) -> None:
    save_image(image, path, lossless=True)


def save_png16(array: np.ndarray, path: str | Path) -> None:
    """A (H, W) uint16 array as a 16-bit grayscale PNG."""
    save_image(Image.fromarray(np.ascontiguousarray(array, dtype=np.uint16)), path)


def open_image(path: str | Path) -> Image.Image:
    """Open an image file with a clear error when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8; a 16-bit grayscale image is scaled to 8 bits (not clipped to white)."""
    image = open_image(path)
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        wide = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"))


def depth_image_as_uint16(image: Image.Image, path: str | Path) -> Image.Image:
    """A 16-bit depth image in mode ``I;16`` (Pillow opens some 16-bit PNGs as ``I``)."""
    if image.mode == "I;16":
        return image
    if image.mode in ("I", "I;16B", "I;16L", "L"):
        arr = np.asarray(image)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(f"{path}: depth values outside 0..65535")
        return Image.fromarray(arr.astype(np.uint16))
    raise ValueError(f"{path}: expected a 16-bit grayscale depth PNG, got Pillow mode {image.mode}")


def read_depth16(path: str | Path) -> np.ndarray:
    """(H, W) uint16 raw depth units."""
    return np.asarray(depth_image_as_uint16(open_image(path), path)).astype(np.uint16)


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) bool from ``depth_mask.webp``: the last channel > 0."""
    arr = np.asarray(open_image(path))
    return (arr[..., -1] if arr.ndim == 3 else arr) > 0


def read_label_image(path: str | Path) -> np.ndarray:
    """(H, W) int64 label indices of an 8/16-bit grayscale or palette PNG."""
    image = open_image(path)
    if image.mode not in ("L", "P", "I", "I;16", "1"):
        raise ValueError(
            f"{path}: expected a grayscale or palette label image holding class indices, "
            f"got Pillow mode {image.mode}"
        )
    return np.asarray(image).astype(np.int64)
