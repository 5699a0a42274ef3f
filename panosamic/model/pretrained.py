"""Building a PanoSAMic from checkpoint files: the work behind ``from_pretrained_panosamic``.

Two kinds of files make a model: an official SAM file (the frozen
``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*`` tensors) and a
PanoSAMic checkpoint with the trainable ``feature_fuser.*`` and
``semantic_decoder.*`` tensors (a Hub ``model.safetensors``, a reference
``model_best.pth``, one of our runs or exports). :func:`load_pretrained`
locates and reads the checkpoint (:mod:`panosamic.hub`), derives the config
(:mod:`.checkpoint_config`), builds the model on the meta device and fills it
strictly: every tensor present with its shape, nothing left over.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..hub.catalog import DEFAULT_REPO_ID
from ..hub.files import check_no_extra, check_tensors, read_state_dict
from ..hub.locate import LocatedCheckpoint, locate_checkpoint
from ..hub.sam import read_sam_tensors, resolve_sam_weights
from .checkpoint_config import config_from_checkpoint, json_from_run_config
from .config import load_config_json

Model = TypeVar("Model", bound=nn.Module)  # PanoSAMic; passed in, so that it may call this module

# In an export's run_config.json: the SAM file saved beside the weights (random SAM weights
# of a test run, which no official file holds), relative to the variant folder.
SAM_WEIGHTS_KEY = "sam_weights"


def load_pretrained(
    model_class: type[Model],
    repo_id_or_path: str | Path = DEFAULT_REPO_ID,
    subfolder: str | None = None,
    config_path: str | Path | None = None,
    vit_model: str | None = None,
    modalities: Iterable[str] | str | None = None,
    num_classes: int | None = None,
    sam_weights_path: str | Path | None = None,
    *,
    channel_attention: str | None = None,
    semantic_only: bool = False,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Model:
    """Load a PanoSAMic checkpoint with its SAM weights, in ``eval()`` mode.

    Args:
        model_class: :class:`~panosamic.model.PanoSAMic` (or a subclass).
        repo_id_or_path: a Hub repo id (``dfki-av/PanoSAMic``), a local directory
            in the same layout (``<dir>/<subfolder>/model.safetensors``), a
            training run directory, an export, or a checkpoint file.
        subfolder: the variant, e.g. ``stanford2d3ds-vith-rgbdn-fold1``.
        config_path: a JSON config (file, or ``config/<name>.json`` of the
            packaged ones). Omitted: the run's or export's own, else the published settings.
        vit_model, modalities, num_classes, channel_attention (``"eca"``,
            ``"fc"``, ``"none"``): optional; read off the checkpoint, and
            checked against it when given.
        sam_weights_path: SAM file or directory. Omitted: the file a run or
            export records, else the cache (downloaded there when missing).
        semantic_only: skip SAM's prompt encoder and mask decoder (no instance masks).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (autocast).
        device: where the model goes (default CPU).
        revision, cache_dir, token, local_files_only: passed to ``huggingface_hub``.
    """
    located = locate_checkpoint(
        repo_id_or_path,
        subfolder,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
    )
    state = read_state_dict(located.path)
    source = str(located.path)
    if config_path is not None:
        json_config: dict[str, Any] | None = load_config_json(config_path)
    elif located.run_config is not None:
        json_config = json_from_run_config(located.run_config)
    else:
        json_config = None
    config = config_from_checkpoint(
        state,
        source=source,
        config=json_config,
        vit_model=vit_model,
        modalities=modalities,
        num_classes=num_classes,
        channel_attention=channel_attention,
        variant=located.variant,
    )
    with torch.device("meta"):
        model = model_class(config, semantic_only=semantic_only, precision=precision)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    harmless = ("prompt_encoder.", "mask_decoder.") if semantic_only else ()
    check_no_extra({k: v for k, v in state.items() if not k.startswith(harmless)}, expected, source)
    merged = {k: v for k, v in state.items() if k in expected}
    needs_sam = {
        k: s for k, s in expected.items() if k not in merged and k.startswith(model.FROZEN_PREFIXES)
    }
    if needs_sam:
        sam_path = resolve_sam_weights(
            config.vit_model, sam_weights_path or recorded_sam_file(located)
        )
        merged.update(read_sam_tensors(sam_path, needs_sam))
    trainable = {k: s for k, s in expected.items() if k.startswith(model.TRAINABLE_PREFIXES)}
    check_tensors(merged, trainable, source)
    check_tensors(merged, expected, "the assembled weights")
    model.load_state_dict(merged, strict=True, assign=True)
    model.freeze_sam()
    if device is not None:
        model.to(device)
    return model.eval()


def recorded_sam_file(located: LocatedCheckpoint) -> Path | None:
    """The SAM file a run or an export names, when it exists (else None: the cache)."""
    run = located.run_config or {}
    if run.get(SAM_WEIGHTS_KEY):  # an export
        path = located.folder / run[SAM_WEIGHTS_KEY]
    elif (run.get("training") or {}).get("sam_weights_path"):  # a training run
        path = Path(run["training"]["sam_weights_path"])
    else:
        return None
    return path if path.is_file() else None


def load_sam_weights(model: Model, sam_weights_path: str | Path | None = None) -> Model:
    """Fill the model's frozen SAM parts from an official SAM file (see :func:`resolve_sam_weights`)."""
    path = resolve_sam_weights(model.config.vit_model, sam_weights_path)
    frozen = frozen_shapes(model)
    on_meta = any(t.is_meta for t in model.state_dict().values())
    model.load_state_dict(read_sam_tensors(path, frozen), strict=False, assign=on_meta)
    return model


def frozen_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the model's frozen SAM tensors."""
    return {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith(model.FROZEN_PREFIXES)
    }
