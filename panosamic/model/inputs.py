"""Validation and preprocessing of the model's list-of-dicts input."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..modalities import MODALITIES
from ..utils.resize import resize_to

# SAM's pixel statistics, applied to every modality (depth and normals included).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class InputError(ValueError):
    """The model's input does not follow the documented contract."""


def validate_batch(batched_input: object, modalities: Sequence[str]) -> list[tuple[int, int]]:
    """Check the batch and return each image's (H, W).

    Each image is a mapping modality -> float tensor (3, H, W) in [0, 255], all
    modalities of one image at the same 2:1 size. Known modalities the model
    does not use are ignored; unknown names are an error.
    """
    if isinstance(batched_input, Mapping):
        raise InputError("batched_input must be a list of dicts (one per image), got a single dict")
    if not isinstance(batched_input, Sequence) or isinstance(batched_input, (str, bytes)):
        raise InputError(
            f"batched_input must be a list of dicts, got {type(batched_input).__name__}"
        )
    if len(batched_input) == 0:
        raise InputError("batched_input is empty: pass at least one image")
    sizes = []
    for i, sample in enumerate(batched_input):
        if not isinstance(sample, Mapping):
            raise InputError(
                f"image {i}: expected a dict modality -> tensor, got {type(sample).__name__}"
            )
        unknown = [k for k in sample if k not in MODALITIES]
        if unknown:
            raise InputError(f"image {i}: unknown modalities {unknown}; known: {list(MODALITIES)}")
        missing = [m for m in modalities if m not in sample]
        if missing:
            raise InputError(
                f"image {i}: missing modalities {missing}; this model needs {list(modalities)}"
            )
        sizes.append(_check_image(i, sample, modalities))
    return sizes


def _check_image(
    i: int, sample: Mapping[str, object], modalities: Sequence[str]
) -> tuple[int, int]:
    size = None
    for name in modalities:
        t = sample[name]
        where = f"image {i}, modality {name!r}"
        if not isinstance(t, Tensor):
            raise InputError(f"{where}: expected a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise InputError(
                f"{where}: expected a float tensor with values in [0, 255], got {t.dtype}"
            )
        if t.dim() != 3 or t.shape[0] != 3:
            raise InputError(f"{where}: expected shape (3, H, W), got {tuple(t.shape)}")
        h, w = t.shape[1:]
        if h == 0 or w != 2 * h:
            raise InputError(
                f"{where}: an equirectangular panorama is twice as wide as high (2:1), got H x W = {h} x {w}"
            )
        if size is not None and (h, w) != size:
            raise InputError(
                f"{where}: size {h} x {w} differs from the image's other modalities {size}"
            )
        size = (h, w)
        if not torch.isfinite(t).all():
            raise InputError(f"{where}: contains NaN or infinite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < 0.0 or hi > 255.0:
            raise InputError(f"{where}: values must lie in [0, 255], got [{lo:.4g}, {hi:.4g}]")
        if name != "depth" and hi <= 1.0:
            warnings.warn(
                f"{where}: every value is at most 1, but the model expects [0, 255] "
                "(scaled by a ToTensor?); multiply by 255",
                stacklevel=4,
            )
    assert size is not None
    return size


def encoder_batch(
    batched_input: Sequence[Mapping[str, Tensor]],
    modalities: Sequence[str],
    views: int,
    network_size: tuple[int, int],
    canvas: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Stack, resize, roll, normalise and pad every modality of every image.

    Returns (N * views * M, 3, S, S) in the order
    [img0 v0 m0..mM-1, img0 v1 m0..mM-1, img1 v0 ...].
    """
    h, w = network_size
    mean = torch.tensor(PIXEL_MEAN, dtype=dtype, device=device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=dtype, device=device).view(1, 3, 1, 1)
    out = torch.zeros(
        len(batched_input) * views * len(modalities), 3, canvas, canvas, dtype=dtype, device=device
    )
    row = 0
    for sample in batched_input:
        stack = torch.stack([sample[m] for m in modalities]).to(device=device, dtype=dtype)
        stack = (resize_to(stack, network_size) - mean) / std
        for view in range(views):
            shifted = stack if view == 0 else torch.roll(stack, w // 2, dims=-1)
            out[row : row + len(modalities), :, :h, :w] = shifted
            row += len(modalities)
    return out
