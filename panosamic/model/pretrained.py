"""Finding, downloading, checking and loading weights.

Two kinds of files make a PanoSAMic model:

* the official SAM checkpoint (``sam_vit_{b,l,h}_*.pth``, Apache-2.0), which
  provides the frozen ``image_encoder.*``, ``prompt_encoder.*`` and
  ``mask_decoder.*`` tensors;
* a PanoSAMic checkpoint with the trainable ``feature_fuser.*`` and
  ``semantic_decoder.*`` tensors: a Hub ``model.safetensors``
  (``dfki-av/PanoSAMic/<variant>/model.safetensors``), a reference training
  checkpoint (``model_best.pth``, a dict whose ``model`` entry is the full
  state dict) or one of our training runs.

Loading is strict: every tensor the model needs must be found with the right
shape, and nothing unexpected may be left over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .model.config import (
    MODALITIES,
    VIT_PRESETS,
    AttentionConfig,
    EncoderConfig,
    PanoSAMicConfig,
    load_config_json,
    model_config_from_dict,
    normalize_modalities,
)
from .model.panosamic import FROZEN_PREFIXES, TRAINABLE_PREFIXES, PanoSAMic

DEFAULT_REPO_ID = "dfki-av/PanoSAMic"
HUB_FILENAME = "model.safetensors"
RUN_CONFIG_NAME = "run_config.json"
RUN_CHECKPOINTS = ("model_best.pth", "model_last.pth")

SAM_URL_ENV = "PANOSAMIC_SAM_URL"  # base URL override (mirrors, tests)
SAM_CACHE_ENV = "PANOSAMIC_SAM_CACHE"  # cache directory override
SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_FILES: dict[str, str] = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
SAM_MD5: dict[str, str] = {
    "sam_vit_b_01ec64.pth": "01ec64d29a2fca3f0661936605ae66f8",
    "sam_vit_l_0b3195.pth": "0b3195507c641ddb6910d2bb5adee89c",
    "sam_vit_h_4b8939.pth": "4b8939a88964f0f4ff5f5b2642c598a6",
}

PUBLISHED_VARIANTS: tuple[str, ...] = (
    *(f"stanford2d3ds-vith-{m}-fold{f}" for m in ("rgb", "rgbd", "rgbdn") for f in (1, 2, 3)),
    *(f"stanford2d3ds-vitl-rgbdn-fold{f}" for f in (1, 2, 3)),
    *(f"stanford2d3ds-vitb-rgbdn-fold{f}" for f in (1, 2, 3)),
    "matterport3d-vith-rgb",
    "matterport3d-vith-rgbd",
)
DATASET_NUM_CLASSES = {"stanford2d3ds": 13, "matterport3d": 20, "structured3d": 40}
_MODALITY_TAGS = {
    "rgb": ("image",),
    "rgbd": ("image", "depth"),
    "rgbn": ("image", "normals"),
    "rgbdn": ("image", "depth", "normals"),
}
_WIDTH_TO_VIT = {cfg.embed_dim: name for name, cfg in VIT_PRESETS.items()}
_CHANNEL_ATTENTION_KINDS = ("eca", "fc", "none")

# The reference's published JSON configs: moving channel and spatial attention.
PUBLISHED_FUSION: dict[str, Any] = {
    "channel_attention": {
        "moving_attention": True,
        "window_size": 8,
        "stride": 4,
        "aggregation": "max",
    },
    "spatial_attention": {
        "moving_attention": True,
        "window_size": 8,
        "stride": 4,
        "aggregation": "none",
    },
    "dual_view_fusion": True,
}


class CheckpointError(ValueError):
    """A weight file is missing tensors, has wrong shapes, or cannot be read."""


# --------------------------------------------------------------------------- reading files
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


# --------------------------------------------------------------------------- expected layouts
def expected_shapes(
    config: PanoSAMicConfig, semantic_only: bool = False
) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the model, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = PanoSAMic(config, semantic_only=semantic_only)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def sam_config(vit_model: str) -> PanoSAMicConfig:
    """A config whose SAM parts are those of an official SAM file."""
    return PanoSAMicConfig(encoder=VIT_PRESETS[vit_model], vit_model=vit_model)


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
        problems.append(f"{len(missing)} missing tensors, e.g. {_preview(missing)}")
    if wrong:
        problems.append(f"{len(wrong)} tensors with the wrong shape, e.g. {_preview(wrong)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(problems))


def _preview(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


# --------------------------------------------------------------------------- SAM files
def sam_cache_dir() -> Path:
    """Where downloaded SAM files live: ``$PANOSAMIC_SAM_CACHE`` or ``~/.cache/panosamic/sam``."""
    return Path(
        os.environ.get(SAM_CACHE_ENV) or Path.home() / ".cache" / "panosamic" / "sam"
    ).expanduser()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_sam_weights(vit_model: str | None, sam_weights_path: str | Path | None = None) -> Path:
    """The SAM file to use.

    ``sam_weights_path`` may be a file, or a directory holding the official file
    for ``vit_model``. Omitted, the file is taken from the cache, or downloaded
    from Meta's public URL into it.
    """
    if sam_weights_path is not None:
        path = Path(sam_weights_path).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            return _sam_file_in_directory(path, vit_model)
        raise FileNotFoundError(f"sam_weights_path {path} is neither a file nor a directory")
    if vit_model not in SAM_FILES:
        raise ValueError(
            "this model has a custom encoder: pass sam_weights_path= pointing at a SAM-layout .pth file"
        )
    cached = sam_cache_dir() / SAM_FILES[vit_model]
    return cached if cached.is_file() else download_sam_weights(vit_model)


def _sam_file_in_directory(directory: Path, vit_model: str | None) -> Path:
    if vit_model not in SAM_FILES:
        raise ValueError(
            f"cannot pick a SAM file from {directory} for a custom encoder: pass the file itself"
        )
    official = directory / SAM_FILES[vit_model]
    if official.is_file():
        return official
    candidates = sorted(directory.glob(f"sam_{vit_model}_*.pth"))
    if len(candidates) == 1:
        return candidates[0]
    present = sorted(p.name for p in directory.glob("*.pth"))
    raise FileNotFoundError(
        f"no SAM weights for {vit_model} in {directory} (expected {SAM_FILES[vit_model]}; "
        f".pth files there: {present or 'none'}). Download "
        f"{SAM_BASE_URL}{SAM_FILES[vit_model]} into that directory, or omit sam_weights_path "
        f"to download it automatically."
    )


def download_sam_weights(
    vit_model: str, cache_dir: str | Path | None = None, progress: bool = True
) -> Path:
    """Download an official SAM file into the cache; resumable, verified, atomic.

    The bytes go to ``<file>.part`` (resumed with an HTTP range request when a
    partial file exists), are checked (MD5 of the official file, then the
    official tensor names and shapes) and only then renamed into place, so a
    broken download never poisons the cache.
    """
    from filelock import FileLock

    name = SAM_FILES[vit_model]
    directory = Path(cache_dir).expanduser() if cache_dir else sam_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    url = os.environ.get(SAM_URL_ENV, SAM_BASE_URL).rstrip("/") + "/" + name
    manual = (
        f"Download {SAM_BASE_URL}{name} on a machine with internet access and either put it at "
        f"{target} or pass sam_weights_path= (the file or its directory)."
    )
    if _offline():
        raise RuntimeError(f"SAM weights {name} are not cached and HF_HUB_OFFLINE is set. {manual}")
    with FileLock(str(target) + ".lock"):
        if target.is_file():  # another process finished it meanwhile
            return target
        partial = target.with_name(name + ".part")
        try:
            _fetch(url, partial, progress)
        except (urllib.error.URLError, OSError) as err:
            raise RuntimeError(
                f"could not download SAM weights from {url}: {err}. {manual}"
            ) from err
        try:
            verify_sam_file(partial, vit_model, expected_md5=SAM_MD5.get(name))
        except CheckpointError as err:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"the download of {url} is broken and was discarded: {err}") from err
        os.replace(partial, target)
    return target


def _fetch(url: str, partial: Path, progress: bool) -> None:
    """Stream ``url`` into ``partial``, resuming from its current size."""
    from tqdm.auto import tqdm

    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if start and response.status != 206:  # server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        mode = "ab" if start else "wb"
        with (
            open(partial, mode) as fh,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=partial.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(1 << 20):
                fh.write(chunk)
                bar.update(len(chunk))
    if total is not None and partial.stat().st_size != total:
        raise OSError(f"incomplete download: {partial.stat().st_size} of {total} bytes")


def verify_sam_file(path: Path, vit_model: str, expected_md5: str | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is the SAM file of ``vit_model``."""
    if expected_md5 is not None:
        digest = file_md5(path)
        if digest != expected_md5:
            raise CheckpointError(f"{path.name} has MD5 {digest}, expected {expected_md5}")
    state = read_state_dict(path)
    expected = {
        k: s
        for k, s in expected_shapes(sam_config(vit_model)).items()
        if k.startswith(FROZEN_PREFIXES)
    }
    check_tensors(state, expected, f"SAM file {path}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise CheckpointError(f"SAM file {path} holds unexpected tensors, e.g. {_preview(extra)}")


def sam_state_for(model: PanoSAMic, sam_path: Path) -> dict[str, Tensor]:
    """The frozen tensors the model needs, read from a SAM file and checked."""
    state = read_state_dict(sam_path)
    expected = {
        k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(FROZEN_PREFIXES)
    }
    check_tensors(state, expected, f"SAM file {sam_path}")
    return {k: state[k] for k in expected}


def load_sam_weights(model: PanoSAMic, sam_weights_path: str | Path | None = None) -> PanoSAMic:
    """Fill the model's frozen SAM parts from an official SAM file (see :func:`resolve_sam_weights`)."""
    path = resolve_sam_weights(model.config.vit_model, sam_weights_path)
    state = sam_state_for(model, path)
    model.load_state_dict(state, strict=False, assign=_on_meta(model))
    return model


def _on_meta(model: torch.nn.Module) -> bool:
    return any(t.is_meta for t in model.state_dict().values())


# --------------------------------------------------------------------------- what a checkpoint holds
@dataclass(frozen=True)
class CheckpointFacts:
    """What the tensor names and shapes of a trainable state dict reveal."""

    embed_dim: int
    grid_size: int
    out_chans: int
    num_branches: int
    num_modalities: int
    num_classes: int
    dual_view: bool
    channel_attention: str  # "eca", "fc" or "none"
    spatial_attention: bool
    baseline: bool

    @property
    def vit_model(self) -> str | None:
        preset = _WIDTH_TO_VIT.get(self.embed_dim)
        if preset is None:
            return None
        p = VIT_PRESETS[preset]
        fits = (self.grid_size, self.out_chans, self.num_branches) == (
            p.grid_size,
            p.out_chans,
            p.num_branches,
        )
        return preset if fits else None


def inspect_checkpoint(state: Mapping[str, Tensor]) -> CheckpointFacts:
    """Read the architecture off a state dict's trainable tensors."""
    blocks = sorted(
        {
            int(m.group(1))
            for k in state
            if (m := re.match(r"feature_fuser\.fusion_blocks\.(\d+)\.", k))
        }
    )
    dual = any(k.startswith("semantic_decoder.decoder_attention.") for k in state)
    try:
        if not blocks:
            return _inspect_baseline(state, dual)
        b0 = "feature_fuser.fusion_blocks.0."
        e, g = state[b0 + "norm.weight"].shape[:2]
        channel = (
            "eca"
            if b0 + "channel_attention.att_layer.conv.weight" in state
            else "fc"
            if b0 + "channel_attention.att_layer.fc.0.weight" in state
            else "none"
        )
        return CheckpointFacts(
            embed_dim=int(e),
            grid_size=int(g),
            out_chans=int(state[b0 + "neck.6.weight"].shape[0]),
            num_branches=len(blocks),
            num_modalities=int(state[b0 + "neck.0.weight"].shape[1]) // int(e),
            num_classes=int(state["semantic_decoder.decoder_head.3.weight"].shape[0]),
            dual_view=dual,
            channel_attention=channel,
            spatial_attention=b0 + "spatial_attention.att_layer.conv.weight" in state,
            baseline=False,
        )
    except KeyError as err:
        raise CheckpointError(f"not a PanoSAMic checkpoint: tensor {err} is missing") from err


def _inspect_baseline(state: Mapping[str, Tensor], dual: bool) -> CheckpointFacts:
    if "semantic_decoder.decoder_head.5.weight" not in state:
        raise CheckpointError(
            "not a PanoSAMic checkpoint: it holds neither feature_fuser.* fusion blocks "
            "nor a baseline semantic_decoder.*"
        )
    conv_in = state["semantic_decoder.decoder_head.1.weight"]
    p = int(conv_in.shape[0])
    return CheckpointFacts(
        embed_dim=0,
        grid_size=int(state["semantic_decoder.decoder_head.2.weight"].shape[-1]) // 2,
        out_chans=p,
        num_branches=0,
        num_modalities=int(conv_in.shape[1]) // p,
        num_classes=int(state["semantic_decoder.decoder_head.5.weight"].shape[0]),
        dual_view=dual,
        channel_attention="none",
        spatial_attention=False,
        baseline=True,
    )


@dataclass(frozen=True)
class VariantName:
    """What a published variant name (``stanford2d3ds-vith-rgbdn-fold1``) says."""

    dataset: str | None = None
    vit_model: str | None = None
    modalities: tuple[str, ...] | None = None


def parse_variant_name(name: str | None) -> VariantName:
    if not name:
        return VariantName()
    low = Path(name).name.lower()
    dataset = next((d for d in DATASET_NUM_CLASSES if d in low), None)
    vit = re.search(r"vit[-_]?([blh])(?![a-z])", low)
    mods = re.search(r"(?:^|[-_])(rgbdn|rgbd|rgbn|rgb)(?=$|[-_])", low)
    return VariantName(
        dataset=dataset,
        vit_model=f"vit_{vit.group(1)}" if vit else None,
        modalities=_MODALITY_TAGS[mods.group(1)] if mods else None,
    )


# --------------------------------------------------------------------------- building the config
def _mismatch(what: str, given: Any, found: Any, source: str) -> CheckpointError:
    return CheckpointError(f"{what} mismatch: you asked for {given!r} but {source} holds {found!r}")


def _resolve_vit(
    facts: CheckpointFacts, vit_model: str | None, hint: VariantName, source: str
) -> str | None:
    found = facts.vit_model
    if vit_model is not None:
        if vit_model not in VIT_PRESETS:
            raise ValueError(f"vit_model must be one of {list(VIT_PRESETS)}, got {vit_model!r}")
        width = VIT_PRESETS[vit_model].embed_dim
        if not facts.baseline and width != facts.embed_dim:
            raise _mismatch(
                "vit_model",
                vit_model,
                f"{_WIDTH_TO_VIT.get(facts.embed_dim, 'custom')} (encoder width {facts.embed_dim})",
                source,
            )
        return vit_model
    if facts.baseline:
        if hint.vit_model is None:
            raise ValueError(
                f"{source} is a baseline checkpoint: its encoder size cannot be read off, pass vit_model="
            )
        return hint.vit_model
    return found


def _resolve_modalities(
    facts: CheckpointFacts, modalities: Any, hint: VariantName, source: str
) -> tuple[str, ...]:
    if modalities is not None:
        chosen = normalize_modalities(modalities)
        if len(chosen) != facts.num_modalities:
            raise _mismatch(
                "modalities", list(chosen), f"weights for {facts.num_modalities} modalities", source
            )
        return chosen
    if hint.modalities is not None and len(hint.modalities) == facts.num_modalities:
        return hint.modalities
    if facts.num_modalities in (1, 3):
        return MODALITIES[:1] if facts.num_modalities == 1 else MODALITIES
    raise ValueError(
        f"{source} holds weights for 2 modalities: pass modalities=('image', 'depth') or ('image', 'normals')"
    )


def _resolve_channel_attention(
    facts: CheckpointFacts, fusion: dict[str, Any], channel_attention: str | None, source: str
) -> dict[str, Any] | None:
    found = facts.channel_attention
    if channel_attention is not None:
        if channel_attention not in _CHANNEL_ATTENTION_KINDS:
            raise ValueError(
                f"channel_attention must be one of {_CHANNEL_ATTENTION_KINDS}, got {channel_attention!r}"
            )
        if channel_attention != found:
            raise _mismatch("channel attention", channel_attention, found, source)
    section = fusion.get("channel_attention")
    if found == "none":
        if section is not None:
            raise _mismatch("channel attention (config)", "present", "no channel attention", source)
        return None
    if section is None:
        raise _mismatch("channel attention (config)", None, found, source)
    section = dict(section)
    if "efficient_attention" in section and bool(section["efficient_attention"]) != (
        found == "eca"
    ):
        given = "eca" if section["efficient_attention"] else "fc"
        raise _mismatch("channel attention (config efficient_attention)", given, found, source)
    section["efficient_attention"] = found == "eca"
    return section


def config_from_checkpoint(
    state: Mapping[str, Tensor],
    *,
    source: str,
    config: Mapping[str, Any] | None = None,
    vit_model: str | None = None,
    modalities: Any = None,
    num_classes: int | None = None,
    channel_attention: str | None = None,
    variant: str | None = None,
) -> PanoSAMicConfig:
    """The model config a checkpoint needs, checked against what the caller said.

    ``config`` is a reference-style JSON dict (fusion settings, view mode, maybe
    an ``encoder`` section); without it the published settings are assumed.
    Anything the caller gives that contradicts the tensors is an error.
    """
    facts = inspect_checkpoint(state)
    hint = parse_variant_name(variant)
    fusion = dict(PUBLISHED_FUSION) if config is None else dict(config)
    if config is None and facts.baseline:
        fusion = {
            "channel_attention": None,
            "spatial_attention": None,
            "dual_view_fusion": False,
            "basic_fusion": "concat",
        }

    if modalities is None:
        modalities = fusion.get("modalities")
    elif fusion.get("modalities") is not None and normalize_modalities(
        modalities
    ) != normalize_modalities(fusion["modalities"]):
        raise _mismatch(
            "modalities", list(normalize_modalities(modalities)), fusion["modalities"], "the config"
        )
    num_classes = num_classes if num_classes is not None else fusion.get("num_classes")
    fusion = {k: v for k, v in fusion.items() if k not in ("modalities", "num_classes")}
    if num_classes is not None and num_classes != facts.num_classes:
        raise _mismatch("num_classes", num_classes, facts.num_classes, source)
    dual = bool(fusion.get("dual_view_fusion", True))
    if dual != facts.dual_view:
        raise _mismatch("dual_view_fusion (config)", dual, facts.dual_view, source)
    if bool(fusion.get("basic_fusion")) != facts.baseline:
        raise _mismatch(
            "basic_fusion (config)",
            fusion.get("basic_fusion"),
            "concat" if facts.baseline else None,
            source,
        )
    fusion["channel_attention"] = _resolve_channel_attention(
        facts, fusion, channel_attention, source
    )
    if (fusion.get("spatial_attention") is not None) != facts.spatial_attention:
        raise _mismatch(
            "spatial attention (config)",
            fusion.get("spatial_attention") is not None,
            facts.spatial_attention,
            source,
        )

    chosen_mods = _resolve_modalities(facts, modalities, hint, source)
    if "encoder" in fusion:
        built = model_config_from_dict(
            fusion, vit_model=None, modalities=chosen_mods, num_classes=facts.num_classes
        )
    else:
        vit = _resolve_vit(facts, vit_model, hint, source)
        if vit is None:
            raise ValueError(
                f"{source} was trained with a custom encoder (width {facts.embed_dim}, grid {facts.grid_size}, "
                f"{facts.num_branches} branches): pass a config whose 'encoder' section describes it"
            )
        built = model_config_from_dict(
            fusion, vit_model=vit, modalities=chosen_mods, num_classes=facts.num_classes
        )
    _check_encoder_fits(built.encoder, facts, source)
    return built


def _check_encoder_fits(encoder: EncoderConfig, facts: CheckpointFacts, source: str) -> None:
    if facts.baseline:
        return
    have = (encoder.embed_dim, encoder.grid_size, encoder.out_chans, encoder.num_branches)
    need = (facts.embed_dim, facts.grid_size, facts.out_chans, facts.num_branches)
    if have != need:
        raise CheckpointError(
            f"encoder (width, grid, neck channels, branches) {have} does not fit {source}, which needs {need}"
        )


# --------------------------------------------------------------------------- locating checkpoints
@dataclass(frozen=True)
class LocatedCheckpoint:
    path: Path
    run_config: dict[str, Any] | None = None
    variant: str | None = None


def locate_checkpoint(
    repo_id_or_path: str | Path,
    subfolder: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> LocatedCheckpoint:
    """Find the checkpoint file: a local file, a run dir, a Hub-layout dir, or a Hub repo."""
    path = Path(repo_id_or_path).expanduser()
    variant = subfolder or (path.parent.name if path.is_file() else None)
    if path.is_file():
        return LocatedCheckpoint(path, _run_config_near(path.parent), variant)
    if path.is_dir():
        root = path / subfolder if subfolder else path
        if not root.is_dir():
            raise FileNotFoundError(
                f"{path} has no sub-folder {subfolder!r}; present: {sorted(p.name for p in path.iterdir() if p.is_dir())}"
            )
        for name in (HUB_FILENAME, *RUN_CHECKPOINTS):
            if (root / name).is_file():
                return LocatedCheckpoint(
                    root / name, _run_config_near(root), subfolder or root.name
                )
        raise FileNotFoundError(
            f"no checkpoint in {root}: expected {HUB_FILENAME} (Hub layout <dir>/<variant>/{HUB_FILENAME}) "
            f"or {' / '.join(RUN_CHECKPOINTS)} (a training run)"
        )
    if str(repo_id_or_path).startswith((".", "/", "~")) or str(repo_id_or_path).count("/") != 1:
        raise FileNotFoundError(
            f"{repo_id_or_path} is neither an existing file or directory nor a Hub repo id"
        )
    return LocatedCheckpoint(
        _hub_download(
            str(repo_id_or_path), subfolder, revision, cache_dir, token, local_files_only
        ),
        None,
        subfolder,
    )


def _run_config_near(directory: Path) -> dict[str, Any] | None:
    file = directory / RUN_CONFIG_NAME
    return json.loads(file.read_text()) if file.is_file() else None


def _hub_download(
    repo_id: str,
    subfolder: str | None,
    revision: str | None,
    cache_dir: str | Path | None,
    token: str | bool | None,
    local_files_only: bool,
) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}/{subfolder + '/' if subfolder else ''}{HUB_FILENAME}"
    if repo_id == DEFAULT_REPO_ID and subfolder not in PUBLISHED_VARIANTS:
        raise ValueError(
            f"subfolder {subfolder!r} is not a published variant of {repo_id}; choose one of {list(PUBLISHED_VARIANTS)}"
        )
    try:
        return Path(
            hf_hub_download(
                repo_id,
                HUB_FILENAME,
                subfolder=subfolder,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                local_files_only=local_files_only,
            )
        )
    except LocalEntryNotFoundError as err:
        raise RuntimeError(
            f"could not get {where}: the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE is set) and the "
            f"file is not in the local cache. On a machine with internet access run\n"
            f"    hf download {repo_id} --include '{subfolder or ''}/*' --local-dir ./PanoSAMic\n"
            f"copy ./PanoSAMic here and load it with from_pretrained_panosamic('./PanoSAMic', "
            f"subfolder={subfolder!r}, ...)."
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise FileNotFoundError(
            f"{where} does not exist on the Hub (revision {revision or 'main'}): {err}"
        ) from err


# --------------------------------------------------------------------------- the one entry point
def load_panosamic(
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
) -> PanoSAMic:
    """Load a PanoSAMic checkpoint with its SAM weights, in ``eval()`` mode.

    Args:
        repo_id_or_path: a Hub repo id (``dfki-av/PanoSAMic``), a local directory
            in the same layout (``<dir>/<subfolder>/model.safetensors``), a
            training run directory, or a checkpoint file.
        subfolder: the variant, e.g. ``stanford2d3ds-vith-rgbdn-fold1``.
        config_path: a JSON config (file, or ``config/<name>.json`` of the
            packaged ones). Omitted: the published settings, or the run's own.
        vit_model, modalities, num_classes, channel_attention (``"eca"``,
            ``"fc"``, ``"none"``): optional; read off the checkpoint, and
            checked against it when given.
        sam_weights_path: SAM file or directory; omitted: cache / download.
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
        json_config = _json_from_run_config(located.run_config)
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
        model = PanoSAMic(config, semantic_only=semantic_only, precision=precision)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    merged = _assemble_state(model, state, expected, source, sam_weights_path)
    model.load_state_dict(merged, strict=True, assign=True)
    model.freeze_sam()
    if device is not None:
        model.to(device)
    return model.eval()


def _json_from_run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's saved model config, as a JSON dict :func:`config_from_checkpoint` understands."""
    model = PanoSAMicConfig.from_dict(run_config["model"])
    data: dict[str, Any] = {
        "channel_attention": _attention_dict(model.channel_attention),
        "spatial_attention": _attention_dict(model.spatial_attention),
        "dual_view_fusion": model.dual_view_fusion,
        "basic_fusion": model.basic_fusion,
        "modalities": list(model.modalities),
        "num_classes": model.num_classes,
        "prompt_decoder": asdict(model.prompt_decoder),  # sizes of a custom SAM mask decoder
        "amg": asdict(model.amg),
    }
    if model.vit_model is None:
        data["encoder"] = asdict(model.encoder)
    return data


def _attention_dict(cfg: AttentionConfig | None) -> dict[str, Any] | None:
    return None if cfg is None else asdict(cfg)


def _assemble_state(
    model: PanoSAMic,
    state: Mapping[str, Tensor],
    expected: Mapping[str, tuple[int, ...]],
    source: str,
    sam_weights_path: str | Path | None,
) -> dict[str, Tensor]:
    """Checkpoint tensors plus the frozen SAM tensors it lacks, strictly checked."""
    harmless = ("prompt_encoder.", "mask_decoder.") if model.semantic_only else ()
    unexpected = [k for k in state if k not in expected and not k.startswith(harmless)]
    if unexpected:
        raise CheckpointError(
            f"{source} holds tensors this model does not have, e.g. {_preview(unexpected)}"
        )
    merged = {k: v for k, v in state.items() if k in expected}
    needs_sam = [k for k in expected if k not in merged and k.startswith(FROZEN_PREFIXES)]
    if needs_sam:
        sam_path = resolve_sam_weights(model.config.vit_model, sam_weights_path)
        sam = sam_state_for(model, sam_path)
        merged.update({k: sam[k] for k in needs_sam})
    trainable = {k: s for k, s in expected.items() if k.startswith(TRAINABLE_PREFIXES)}
    check_tensors(merged, trainable, source)
    check_tensors(merged, expected, "the assembled weights")
    return merged
