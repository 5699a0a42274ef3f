"""The semantic network: SAM's ViT encoder, MCBAM fusion, the spherical decoder, and its config.

Map: :mod:`.config` (sizes and settings), :mod:`.image_encoder` (SAM's ViT, frozen),
:mod:`.mcbam` (fusion of the encoder branches across modalities), :mod:`.semantic_decoder`
(decoder head and dual-view blend), :mod:`.inputs` (the list-of-dicts input),
:mod:`.panosamic` (the assembled model), :mod:`.checkpoint_config` and :mod:`.pretrained`
(building it from checkpoint files). The instance path is :mod:`panosamic.instances`.

``PanoSAMic`` and ``PanoSAMicConfig`` are imported on first use, so that the
settings modules load without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import PanoSAMicConfig as PanoSAMicConfig
    from .panosamic import PanoSAMic as PanoSAMic

_EXPORTS = {"PanoSAMic": "panosamic", "PanoSAMicConfig": "config"}

__all__ = ["PanoSAMic", "PanoSAMicConfig"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
