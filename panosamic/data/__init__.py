"""Datasets: preparation, loading, synthetic panoramas and normals from depth.

The public names are imported lazily, so that worker processes that only
prepare data do not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DATASETS": "catalog",
    "DATASET_CLASS_NAMES": "catalog",
    "DATASET_INFO": "catalog",
    "PanoramaDataset": "datasets",
    "build_dataset": "datasets",
    "collate_panoramas": "loader",
    "prepare_dataset": "prepare",
    "normals_from_depth": "normals",
    "render_room": "synth",
    "write_synthetic_dataset": "synth",
    "make_prepared_dataset": "synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
