"""PanoSAMic weights: loading a published or local checkpoint, exporting a run, publishing it.

>>> from panosamic.weights import load_panosamic
>>> model = load_panosamic("dfki-av/PanoSAMic", subfolder="stanford2d3ds-vitb-rgbdn-fold1")

The work is done in three places: :mod:`panosamic.hub` finds, downloads and
reads the files (the SAM file from Meta, the checkpoint from the Hugging Face
Hub or a local folder), :mod:`panosamic.model.pretrained` builds the model from
them, and :mod:`.export` turns a training run into the published layout.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

from ..hub.catalog import (
    DEFAULT_REPO_ID,
    PUBLISHED,
    PUBLISHED_FUSION,
    PUBLISHED_VARIANTS,
    parse_variant_name,
)
from ..hub.files import CheckpointError, file_md5, read_state_dict
from ..hub.locate import HUB_FILENAME, RUN_CONFIG_NAME, locate_checkpoint
from ..hub.sam import (
    SAM_CACHE_ENV,
    SAM_FILES,
    SAM_MD5,
    SAM_URL_ENV,
    download_sam_weights,
    resolve_sam_weights,
    sam_cache_dir,
)
from ..model import PanoSAMic
from ..model.checkpoint_config import config_from_checkpoint, inspect_checkpoint
from ..model.pretrained import load_pretrained, load_sam_weights
from .export import export_run, upload_variant


def load_panosamic(*args: Any, **kwargs: Any) -> PanoSAMic:
    """Load a PanoSAMic checkpoint with its SAM weights, in ``eval()`` mode.

    The same as ``PanoSAMic.from_pretrained_panosamic``; the arguments are
    described at :func:`panosamic.model.pretrained.load_pretrained`.
    """
    return load_pretrained(PanoSAMic, *args, **kwargs)


load_panosamic.__signature__ = inspect.signature(partial(load_pretrained, PanoSAMic))  # type: ignore[attr-defined]


__all__ = [
    "DEFAULT_REPO_ID",
    "HUB_FILENAME",
    "PUBLISHED",
    "PUBLISHED_FUSION",
    "PUBLISHED_VARIANTS",
    "RUN_CONFIG_NAME",
    "SAM_CACHE_ENV",
    "SAM_FILES",
    "SAM_MD5",
    "SAM_URL_ENV",
    "CheckpointError",
    "config_from_checkpoint",
    "download_sam_weights",
    "export_run",
    "file_md5",
    "inspect_checkpoint",
    "load_panosamic",
    "load_sam_weights",
    "locate_checkpoint",
    "parse_variant_name",
    "read_state_dict",
    "resolve_sam_weights",
    "sam_cache_dir",
    "upload_variant",
]
