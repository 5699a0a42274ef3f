"""Reading weight files and checking that their tensors fit a model."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor


class CheckpointError(ValueError):
    """A weight file is missing tensors, has wrong shapes, or cannot be read."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth`` file.

    A ``.pth`` is read with ``weights_only=True``; a dict with a ``model`` entry
    (a training checkpoint) is unwrapped, and DDP's ``module.`` prefix dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"{path} is not a readable safetensors file (corrupted or truncated?): {err}"
            ) from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # zip errors, unpickling errors, truncation
            raise CheckpointError(
                f"{path} could not be read as a PyTorch checkpoint with weights_only=True "
                f"(corrupted, truncated or not a weight file?): {err}"
            ) from err
        if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
            state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def file_md5(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_tensors(
    found: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]], source: str
) -> None:
    """Every expected name present with its shape; raise naming what is wrong."""
    missing = [k for k in expected if k not in found]
    wrong = [
        f"{k}: expected {list(expected[k])}, found {list(found[k].shape)}"
        for k in expected
        if k in found and tuple(found[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors, e.g. {preview(missing)}")
    if wrong:
        problems.append(f"{len(wrong)} tensors with the wrong shape, e.g. {preview(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(problems))


def check_no_extra(
    found: Mapping[str, Tensor], expected: Mapping[str, object], source: str
) -> None:
    """Nothing in ``found`` beyond ``expected``; raise naming the extras."""
    extra = [k for k in found if k not in expected]
    if extra:
        raise CheckpointError(
            f"{source} holds tensors this model does not have, e.g. {preview(extra)}"
        )


def preview(items: list[str], n: int = 3) -> str:
    """The first ``n`` items and how many more there are."""
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")
