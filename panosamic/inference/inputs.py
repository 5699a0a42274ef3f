"""Panorama files -> the model's input: RGB, depth as pseudo-disparity, normals.

Depth reaches the model as ``255 (1 - min(d, d_t) / d_t)``, so a depth file
needs three numbers (:class:`DepthEncoding`): its raw units per metre, the raw
value of pixels without depth, and d_t, the depth threshold the checkpoint was
trained with. The published checkpoints do not record their d_t (the reference
derives it from the training split's depth histogram); when no d_t is given
or recorded, each panorama's own depths give it by the same rule (the 99.5 %
quantile floored to 0.1 m), and the summary says which value was used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.files import read_depth16, read_mask, read_rgb
from ..data.normals import normals_image_from_depth, read_depth_file
from ..data.stats import depth_threshold_of
from ..modalities import pseudo_disparity

DEMO_DEPTH_MAX = 10.0  # d_t of the synthetic demo room, in metres


@dataclass(frozen=True)
class DepthEncoding:
    """How a depth file's raw values become metres and the model's pseudo-disparity.

    ``scale``: raw units per metre (Stanford2D3DS 512, Matterport3D 4000,
    Structured3D 1000; 1 for a float ``.npy`` in metres); ``max_metres``: d_t,
    None to take it from each panorama's depths; ``invalid``: the raw value of
    pixels without depth (besides 0, NaN and infinity).
    """

    scale: float = 1.0
    max_metres: float | None = None
    invalid: float = 0.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(
                f"the depth scale (raw units per metre) must be positive, got {self.scale}"
            )
        if self.max_metres is not None and not self.max_metres > 0:
            raise ValueError(
                f"d_t (--depth-max) must be a positive number of metres, got {self.max_metres}"
            )


@dataclass
class PanoramaInputs:
    """One panorama read from files.

    ``rgb``: (H, W, 3) uint8; ``modalities``: modality -> float (3, H, W) in
    [0, 255], the model's input; ``metres`` and ``valid``: (H, W) depth and its
    validity when the panorama has depth; ``depth_max``: the d_t used.
    """

    name: str
    rgb: np.ndarray
    modalities: dict[str, Tensor]
    metres: np.ndarray | None = None
    valid: np.ndarray | None = None
    depth_max: float | None = None
    notes: list[str] = field(default_factory=list)


def image_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> float32 (3, H, W) in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32))


def disparity_tensor(metres: np.ndarray, valid: np.ndarray, d_t: float) -> Tensor:
    """(H, W) metres -> the depth modality: float32 (3, H, W) pseudo-disparity."""
    disparity = pseudo_disparity(metres, valid, d_t)
    return torch.from_numpy(np.repeat(disparity[None], 3, 0))


def with_depth(
    panorama: PanoramaInputs, metres: np.ndarray, valid: np.ndarray, d_t: float | None
) -> PanoramaInputs:
    """Add the depth modality (d_t from the depths themselves when None)."""
    if metres.shape != panorama.rgb.shape[:2]:
        raise ValueError(f"depth {metres.shape} and image {panorama.rgb.shape[:2]} differ in size")
    if not valid.any():
        raise ValueError("the depth map has no valid pixel")
    if d_t is None:
        d_t = max(depth_threshold_of(metres[valid]), 0.1)
        panorama.notes.append(f"d_t {d_t:.1f} m from this panorama's depths")
    panorama.modalities["depth"] = disparity_tensor(metres, valid, d_t)
    panorama.metres, panorama.valid, panorama.depth_max = metres, valid, d_t
    return panorama


def read_panorama(
    image: Path,
    *,
    name: str | None = None,
    depth: Path | None = None,
    depth_encoding: DepthEncoding | None = None,
    normals: Path | None = None,
    normals_from_depth: bool = False,
) -> PanoramaInputs:
    """Read a panorama and, when given, its depth (16-bit PNG or float ``.npy``) and normals."""
    panorama = PanoramaInputs(name or image.stem, _equirectangular(read_rgb(image), image), {})
    panorama.modalities["image"] = image_tensor(panorama.rgb)
    if depth is not None:
        encoding = depth_encoding or DepthEncoding()
        raw, valid = read_depth_file(depth, invalid_value=encoding.invalid)
        with_depth(panorama, raw / encoding.scale, valid, encoding.max_metres)
    _add_normals(panorama, normals, normals_from_depth)
    return panorama


def read_prepared_sample(
    folder: Path, depth_divisor: float, d_t: float, *, normals_from_depth: bool = False
) -> PanoramaInputs:
    """A sample of a prepared dataset (``rgb.webp``, ``depth.png``, ``depth_mask.webp``,
    ``normals.webp``), encoded as training and evaluation encode it."""
    panorama = PanoramaInputs(folder.name, read_rgb(folder / "rgb.webp"), {})
    panorama.modalities["image"] = image_tensor(panorama.rgb)
    metres = read_depth16(folder / "depth.png").astype(np.float64) / depth_divisor
    with_depth(panorama, metres, read_mask(folder / "depth_mask.webp"), d_t)
    normals = folder / "normals.webp"
    _add_normals(panorama, normals if normals.is_file() else None, normals_from_depth)
    return panorama


def _equirectangular(rgb: np.ndarray, path: Path) -> np.ndarray:
    h, w = rgb.shape[:2]
    if w != 2 * h:
        raise ValueError(
            f"{path}: an equirectangular panorama is twice as wide as high (2:1), got {w} x {h}"
        )
    return rgb


def _add_normals(panorama: PanoramaInputs, normals: Path | None, from_depth: bool) -> None:
    if normals is not None:
        picture = read_rgb(normals)
        if picture.shape[:2] != panorama.rgb.shape[:2]:
            raise ValueError(
                f"normals {picture.shape[:2]} and image {panorama.rgb.shape[:2]} differ in size"
            )
        panorama.modalities["normals"] = image_tensor(picture)
    elif from_depth:
        if panorama.metres is None:
            raise ValueError("--normals-from-depth needs depth")
        picture = normals_image_from_depth(panorama.metres, panorama.valid)
        panorama.modalities["normals"] = image_tensor(picture)
