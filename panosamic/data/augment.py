"""Training augmentations: horizontal flip, horizontal roll, RGB channel permutation.

As in the reference, each is drawn independently with probability 0.25 (a
uniform draw <= p), in the order flip, roll, permute; the roll shift is
``int(u * W)``; flip and roll apply to every data and label tensor, the
permutation to ``image`` only.

The reference moves normals like pixels but leaves the vectors alone. With
``mirror_normals=True`` the vectors change too, following the normals' frame
(channels (R, G, B) = (x, y, z), ``rgb = (n + 1) * 127.5``, z up; see
:mod:`panosamic.data.sphere` for the camera frame):

- ``"world"`` (Stanford2D3DS, Structured3D): normals in a gravity-aligned
  building frame. A roll only turns the camera, so the vectors stay; a flip
  mirrors the building, expressed again in a right-handed frame by negating y
  (G -> 255 - G). The building's yaw is arbitrary in these datasets, so
  mirroring about any vertical plane is equally valid.
- ``"camera"`` (normals computed from depth, e.g. Matterport3D): normals in the
  panorama's own frame. A flip negates y; a roll by ``s`` columns turns the
  vectors by ``-2 pi s / W`` about z, so each stays consistent with its pixel's ray.

Pixels that carry no normal (#808080) are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .normals import MISSING_NORMAL_RGB
from .sphere import roll_angle

AUGMENTATION_PROBABILITY = 0.25  # 1 / (n + 1) with the n = 3 augmentations
NORMALS_FRAMES = ("world", "camera")


@dataclass(frozen=True)
class Augmentation:
    """One drawn augmentation: flip?, roll shift in columns (0: none), channel permutation or None."""

    flip: bool = False
    shift: int = 0
    permutation: tuple[int, int, int] | None = None


def draw_augmentation(
    width: int, generator: torch.Generator | None = None, p: float = AUGMENTATION_PROBABILITY
) -> Augmentation:
    """Draw flip, roll and permutation independently, each applied when a uniform draw <= p."""

    def uniform() -> float:
        return float(torch.rand((), generator=generator))

    flip = uniform() <= p
    shift = int(uniform() * width) if uniform() <= p else 0
    permutation = None
    if uniform() <= p:
        permutation = tuple(int(i) for i in torch.randperm(3, generator=generator))
    return Augmentation(flip, shift, permutation)


def apply_augmentation(
    data: dict[str, Tensor],
    labels: dict[str, Tensor],
    aug: Augmentation,
    *,
    mirror_normals: bool = False,
    normals_frame: str = "world",
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Apply ``aug`` to (C, H, W) data tensors and (1, H, W) label tensors; empty tensors pass."""
    if normals_frame not in NORMALS_FRAMES:
        raise ValueError(f"normals_frame must be one of {NORMALS_FRAMES}, got {normals_frame!r}")
    data, labels = dict(data), dict(labels)
    movable = [(data, k) for k in data] + [(labels, k) for k in labels]
    if aug.flip:
        for d, k in movable:
            if d[k].numel():
                d[k] = torch.flip(d[k], dims=(-1,))
        if mirror_normals and data.get("normals", torch.empty(0)).numel():
            data["normals"] = mirror_normals_y(data["normals"])
    if aug.shift:
        for d, k in movable:
            if d[k].numel():
                d[k] = torch.roll(d[k], shifts=aug.shift, dims=-1)
        normals = data.get("normals", torch.empty(0))
        if mirror_normals and normals_frame == "camera" and normals.numel():
            data["normals"] = rotate_normals_z(normals, roll_angle(aug.shift, normals.shape[-1]))
    if aug.permutation is not None and data.get("image", torch.empty(0)).numel():
        data["image"] = data["image"][list(aug.permutation)]
    return data, labels


def _missing(normals: Tensor) -> Tensor:
    return (normals == MISSING_NORMAL_RGB).all(dim=0, keepdim=True)


def mirror_normals_y(normals: Tensor) -> Tensor:
    """Encoded normals (3, H, W) in [0, 255] with y negated (G -> 255 - G)."""
    out = normals.clone()
    out[1] = 255.0 - normals[1]
    return torch.where(_missing(normals), normals, out)


def rotate_normals_z(normals: Tensor, angle: float) -> Tensor:
    """Encoded normals (3, H, W) turned by ``angle`` radians about z (counter-clockwise from above)."""
    vec = normals.double() / 127.5 - 1.0
    c, s = (
        torch.cos(torch.tensor(angle, dtype=torch.float64)),
        torch.sin(torch.tensor(angle, dtype=torch.float64)),
    )
    x, y = vec[0], vec[1]
    vec = torch.stack([c * x - s * y, s * x + c * y, vec[2]])
    out = torch.clamp(torch.round((vec + 1.0) * 127.5), 0, 255).to(normals.dtype)
    return torch.where(_missing(normals), normals, out)
