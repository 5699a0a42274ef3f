"""The model config a checkpoint needs: read off its tensors, reconciled with what the caller says.

A published checkpoint holds only the trainable tensors. Their names and
shapes tell the encoder width and grid, the number of branches, modalities
and classes, the view mode and the channel-attention kind (each module reads
its own: :func:`~.mcbam.read_fuser_layout`, :func:`~.semantic_decoder.read_decoder_layout`).
:func:`config_from_checkpoint` merges these facts with a JSON config (or the
published settings), the variant name and the caller's arguments; anything
given that contradicts the file is an error naming both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

from ..hub.catalog import PUBLISHED_FUSION, VariantName, parse_variant_name
from ..hub.files import CheckpointError
from ..modalities import MODALITIES, normalize_modalities
from .config import (
    CHANNEL_ATTENTION_KINDS,
    VIT_PRESETS,
    AttentionConfig,
    EncoderConfig,
    PanoSAMicConfig,
    channel_attention_kind,
    model_config_from_dict,
)
from .mcbam import read_fuser_layout
from .semantic_decoder import read_decoder_layout

_WIDTH_TO_VIT = {cfg.embed_dim: name for name, cfg in VIT_PRESETS.items()}
BASELINE_FUSION: dict[str, Any] = {
    "channel_attention": None,
    "spatial_attention": None,
    "dual_view_fusion": False,
    "basic_fusion": "concat",
}


@dataclass(frozen=True)
class CheckpointFacts:
    """What the tensor names and shapes of a trainable state dict reveal."""

    embed_dim: int  # 0 for the baseline, whose encoder width is not stored
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
        """The ViT preset the encoder dimensions fit, or None (a custom encoder)."""
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
    try:
        fuser = read_fuser_layout(state)
        if fuser is None and "semantic_decoder.decoder_head.5.weight" not in state:
            raise CheckpointError(
                "not a PanoSAMic checkpoint: it holds neither feature_fuser.* fusion blocks "
                "nor a baseline semantic_decoder.*"
            )
        decoder = read_decoder_layout(state, baseline=fuser is None)
    except KeyError as err:
        raise CheckpointError(f"not a PanoSAMic checkpoint: tensor {err} is missing") from err
    if fuser is None:
        return CheckpointFacts(
            embed_dim=0,
            grid_size=decoder.grid_size,
            out_chans=decoder.out_chans,
            num_branches=0,
            num_modalities=decoder.num_modalities,
            num_classes=decoder.num_classes,
            dual_view=decoder.dual_view,
            channel_attention="none",
            spatial_attention=False,
            baseline=True,
        )
    return CheckpointFacts(
        embed_dim=fuser.embed_dim,
        grid_size=fuser.grid_size,
        out_chans=fuser.out_chans,
        num_branches=fuser.num_branches,
        num_modalities=fuser.num_modalities,
        num_classes=decoder.num_classes,
        dual_view=decoder.dual_view,
        channel_attention=fuser.channel_attention,
        spatial_attention=fuser.spatial_attention,
        baseline=False,
    )


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
        if channel_attention not in CHANNEL_ATTENTION_KINDS:
            raise ValueError(
                f"channel_attention must be one of {CHANNEL_ATTENTION_KINDS}, got {channel_attention!r}"
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
    if "efficient_attention" in section and channel_attention_kind(section) != found:
        given = channel_attention_kind(section)
        raise _mismatch("channel attention (config efficient_attention)", given, found, source)
    return {**section, "efficient_attention": found == "eca"}


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
    an ``encoder`` section); without it the published settings are assumed and
    the view mode is read off the file. Anything the caller gives that
    contradicts the tensors is an error.
    """
    facts = inspect_checkpoint(state)
    hint = parse_variant_name(variant)
    if config is not None:
        fusion = dict(config)
    elif facts.baseline:
        fusion = dict(BASELINE_FUSION)
    else:
        fusion = {**PUBLISHED_FUSION, "dual_view_fusion": facts.dual_view}

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
        vit = None
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


def json_from_run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's (or an export's) saved model config, as a JSON dict :func:`config_from_checkpoint`
    understands."""
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
