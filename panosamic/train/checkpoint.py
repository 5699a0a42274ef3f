"""Training checkpoints: contents, RNG states, reading them back.

A checkpoint (``model_last.pth`` / ``model_best.pth`` in the run directory) is
a ``torch.save``d dict that loads with ``weights_only=True``:

- ``format``: :data:`CHECKPOINT_FORMAT`;
- ``epoch``: completed epochs; ``batches_done``: micro-batches of epoch
  ``epoch + 1`` already trained (0 at an epoch end); ``global_step``: optimizer steps;
- ``model``: the state dict, ``model_contents`` says which: ``"trainable"``
  (``feature_fuser.*`` / ``semantic_decoder.*``, the default; the frozen SAM
  weights come from the SAM file) or ``"full"`` (every tensor, the reference's
  layout, ``--full-checkpoints`` or ``--random-sam``);
- ``optimizer``, ``lr_scheduler`` (None for Ranger21), ``grad_scaler`` (fp16 only);
- ``best_miou``, ``best_epoch``, ``miou``, ``macc``;
- ``rng``: every process's RNG states (Python, NumPy, torch CPU, CUDA);
- ``progress``: running sums of the unfinished epoch.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.atomic import atomic_write

CHECKPOINT_FORMAT = "panosamic.train.checkpoint/1"


def rng_states() -> dict[str, Any]:
    """This process's RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_states(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """Write a training checkpoint atomically (see :mod:`panosamic.utils.atomic`)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise RuntimeError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a panosamic training checkpoint (format {CHECKPOINT_FORMAT!r}); "
            "resume needs a checkpoint written by `panosamic train`"
        )
    return ckpt
