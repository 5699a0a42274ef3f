"""Panorama files -> the model's input: RGB, depth as pseudo-disparity, normals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.files import read_rgb
from ..data.normals import normals_image_from_depth, read_depth_file
from ..modalities import pseudo_disparity

DEMO_DEPTH_MAX = 10.0  # d_t of the synthetic demo room, in metres


@dataclass(frozen=True)
class DepthEncoding:
    """How a depth file's raw values become metres and the model's pseudo-disparity."""

    scale: float  # raw units per metre (Stanford2D3DS 512, Matterport3D 4000, Structured3D 1000)
    max_metres: float  # d_t: depth at or beyond it maps to 0
    invalid: float = 0.0  # raw value of pixels without depth


@dataclass
class PanoramaInputs:
    """One panorama read from files: its name, the RGB picture and the model's input.

    ``rgb``: (H, W, 3) uint8; ``modalities``: modality -> float (3, H, W) in [0, 255].
    """

    name: str
    rgb: np.ndarray
    modalities: dict[str, Tensor]


def image_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> float32 (3, H, W) in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32))


def disparity_tensor(metres: np.ndarray, valid: np.ndarray, d_t: float) -> Tensor:
    """(H, W) metres -> the depth modality: float32 (3, H, W) pseudo-disparity."""
    disparity = pseudo_disparity(metres, valid, d_t)
    return torch.from_numpy(np.repeat(disparity[None], 3, 0))


def read_panorama(
    image: Path,
    *,
    depth: Path | None = None,
    depth_encoding: DepthEncoding | None = None,
    normals: Path | None = None,
    normals_from_depth: bool = False,
) -> PanoramaInputs:
    """Read a panorama and, when given, its depth (16-bit PNG or float ``.npy``) and normals."""
    rgb = read_rgb(image)
    inputs: dict[str, Tensor] = {"image": image_tensor(rgb)}
    metres = valid = None
    if depth is not None:
        if depth_encoding is None:
            raise ValueError(
                "--depth needs --depth-scale (units per metre) and --depth-max (d_t in metres)"
            )
        raw, valid = read_depth_file(depth, invalid_value=depth_encoding.invalid)
        metres = raw / depth_encoding.scale
        if metres.shape != rgb.shape[:2]:
            raise ValueError(f"depth {metres.shape} and image {rgb.shape[:2]} differ in size")
        inputs["depth"] = disparity_tensor(metres, valid, depth_encoding.max_metres)
    if normals is not None:
        picture = read_rgb(normals)
        if picture.shape[:2] != rgb.shape[:2]:
            raise ValueError(
                f"normals {picture.shape[:2]} and image {rgb.shape[:2]} differ in size"
            )
        inputs["normals"] = image_tensor(picture)
    elif normals_from_depth:
        if metres is None:
            raise ValueError("--normals-from-depth needs --depth")
        inputs["normals"] = image_tensor(normals_image_from_depth(metres, valid))
    return PanoramaInputs(image.stem, rgb, inputs)


def demo_panorama(depth_max: float | None = None) -> PanoramaInputs:
    """A synthetic furnished room with exact depth and normals (``panosamic segment --demo``)."""
    from ..data.synth import render_room

    room = render_room(seed=0, height=512, width=1024, dataset="stanford2d3ds")
    metres, valid = room.depth.astype(np.float64), room.valid & (room.depth > 0)
    return PanoramaInputs(
        "demo",
        room.rgb,
        {
            "image": image_tensor(room.rgb),
            "depth": disparity_tensor(metres, valid, depth_max or DEMO_DEPTH_MAX),
            "normals": image_tensor(normals_image_from_depth(metres, valid)),
        },
    )
