"""Parameters and FLOPs of a PanoSAMic, per component, for one 512 x 1024 panorama.

What the reference's efficiency report prints (total, trainable and frozen
parameters; FLOPs of one panorama), split into the encoder, the fusion, the
decoder and the instance path, for any published variant or config
(``panosamic info``):

- The model is built on fake tensors (``FakeTensorMode``): every tensor has its
  shape and no memory, so ViT-H needs neither weights nor RAM for them, and the
  forward passes below do no arithmetic.
- FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`: matrix
  products, convolutions and attention, 2 FLOPs per multiply-add. Normalisation,
  activations and resizing are not counted. ``macs`` (FLOPs / 2) is the unit of
  fvcore, which the reference uses, and of the paper's TFLOPs (Table 6).
- Each component is counted in the reference's order of operations: the encoder
  with its neck, one canvas pass, times the passes of a panorama (every
  modality in every view); the fusion with its final upsampling; the decoder
  head on the concatenated fused map, then the dual-view blend; the instance
  path as SAM's mask decoder on every prompt of the point grid, for every
  embedding the mask generation uses. Two notes give what our faster routes
  compute instead: the decoder's first 1 x 1 convolution before the upsampling
  (:meth:`~panosamic.model.semantic_decoder.SemanticDecoder.head_from_blocks`)
  and the factored mask decoder (at most: masks only for the prompts that pass
  the IoU filter). Filtering, stability scores, NMS and the merges are not
  counted, nor the prompt encoding of the grid (one 2 x 128 projection per point).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .data.catalog import DATASET_INFO
from .hub.catalog import PUBLISHED, PUBLISHED_FUSION, PublishedFamily
from .instances.amg import low_res_region, point_grid, prompt_context, prompt_decoder
from .model.config import (
    PanoSAMicConfig,
    channel_attention_kind,
    load_config_json,
    model_config_from_dict,
    with_channel_attention,
)
from .model.panosamic import PanoSAMic
from .model.semantic_decoder import add_view_positional_encoding
from .utils.cpu_parallel import ENV_SWITCH

PANORAMA_HW = (512, 1024)  # the panorama the report is for (the model's own input size)
# Module attributes of each component (the instance path: SAM's prompt encoder and mask decoder).
COMPONENTS: dict[str, tuple[str, ...]] = {
    "encoder": ("image_encoder",),
    "fusion": ("feature_fuser",),
    "decoder": ("semantic_decoder",),
    "instance path": ("prompt_encoder", "mask_decoder"),
}
VIT_NAMES = {"vit_b": "ViT-B", "vit_l": "ViT-L", "vit_h": "ViT-H"}


@dataclass(frozen=True)
class Component:
    """One component's parameters and its FLOPs for one panorama (2 per multiply-add)."""

    name: str
    parameters: int
    trainable: int
    flops: float

    @property
    def frozen(self) -> int:
        return self.parameters - self.trainable

    @property
    def macs(self) -> float:
        """Multiply-adds: fvcore's (the reference's) and the paper's "FLOPs"."""
        return self.flops / 2


@dataclass
class EfficiencyReport:
    """:func:`efficiency_report`'s result; ``components`` in :data:`COMPONENTS` order."""

    title: str
    components: list[Component]
    encoder_passes: int
    instance_embeddings: int
    prompts_per_embedding: int
    decoder_flops_ours: float  # the decoder as our inference computes it
    instance_flops_ours: float  # our factored mask decoder, every prompt kept (an upper bound)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def total(self, instances: bool = True) -> Component:
        """The sum over the components, with or without the instance path."""
        parts = [c for c in self.components if instances or c.name != "instance path"]
        return Component(
            "total" if instances else "semantic",
            sum(c.parameters for c in parts),
            sum(c.trainable for c in parts),
            sum(c.flops for c in parts),
        )

    def to_dict(self) -> dict[str, Any]:
        rows = [*self.components, self.total(False), self.total(True)]
        return {
            "title": self.title,
            "panorama_hw": list(PANORAMA_HW),
            "flops_unit": "2 per multiply-add (torch.utils.flop_counter); macs = flops / 2",
            "components": {c.name: {**asdict(c), "frozen": c.frozen, "macs": c.macs} for c in rows},
            "encoder_passes": self.encoder_passes,
            "instance_embeddings": self.instance_embeddings,
            "prompts_per_embedding": self.prompts_per_embedding,
            "decoder_flops_ours": self.decoder_flops_ours,
            "instance_flops_ours": self.instance_flops_ours,
            "seconds": self.seconds,
            "config": self.config,
        }


# ----------------------------------------------------------------------------- the model


def published_config(variant: str, channel_attention: str = "eca") -> tuple[PanoSAMicConfig, str]:
    """The config of a published variant (``stanford2d3ds-vith-rgbdn``, with or without
    ``-fold<k>``), with ECA (what the checkpoints hold) or ``"fc"`` channel attention."""
    family = _family(variant)
    fusion = with_channel_attention(PUBLISHED_FUSION, channel_attention)
    config = model_config_from_dict(
        fusion,
        vit_model=family.vit_model,
        modalities=family.modalities,
        num_classes=DATASET_INFO[family.dataset].num_classes,
    )
    return config, family.name


def _family(variant: str) -> PublishedFamily:
    for family in PUBLISHED:
        if variant == family.name or variant in family.variants:
            return family
    names = [f.name for f in PUBLISHED]
    raise ValueError(
        f"{variant!r} is not a published variant; choose one of {names} (a -fold<k> suffix "
        "may follow), or describe the model with --config"
    )


def json_config(
    config_path: str,
    *,
    vit_model: str | None = "vit_h",
    modalities: Any = ("image", "depth", "normals"),
    num_classes: int = 13,
    channel_attention: str = "config",
) -> PanoSAMicConfig:
    """The model a JSON config describes (``channel_attention``: "config" keeps the config's
    choice, "eca" or "fc" switch it)."""
    data = load_config_json(config_path)
    if channel_attention != "config":
        data = with_channel_attention(data, channel_attention)
    return model_config_from_dict(
        data, vit_model=vit_model, modalities=modalities, num_classes=num_classes
    )


def describe(config: PanoSAMicConfig) -> str:
    """E.g. "ViT-H, image+depth+normals, dual view, ECA channel attention, 13 classes"."""
    vit = VIT_NAMES.get(config.vit_model or "", "custom encoder")
    views = "dual view" if config.dual_view_fusion else "single view"
    if config.basic_fusion:
        fusion = f"{config.basic_fusion} baseline, no fusion blocks"
    else:
        kind = channel_attention_kind(config.channel_attention)
        fusion = {"eca": "ECA", "fc": "fully connected", "none": "no"}[kind] + " channel attention"
    mods = "+".join(config.modalities)
    return f"{vit}, {mods}, {views}, {fusion}, {config.num_classes} classes"


def parameter_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Component -> (parameters, trainable parameters), per :data:`COMPONENTS`."""
    counts = {}
    for name, attributes in COMPONENTS.items():
        params = [
            p
            for attribute in attributes
            if (module := getattr(model, attribute, None)) is not None
            for p in module.parameters()
        ]
        counts[name] = (
            sum(p.numel() for p in params),
            sum(p.numel() for p in params if p.requires_grad),
        )
    return counts


def count_parameters(config: PanoSAMicConfig, instances: bool = True) -> dict[str, tuple[int, int]]:
    """:func:`parameter_counts` of the model ``config`` describes, built on the meta device."""
    with torch.device("meta"):
        model = PanoSAMic(config, semantic_only=not instances)
    return parameter_counts(model)


def fake_model(config: PanoSAMicConfig, instances: bool = True) -> tuple[PanoSAMic, FakeTensorMode]:
    """The model on fake tensors (shapes, no memory), in eval mode, with its fake mode."""
    mode = FakeTensorMode()
    with mode:
        model = PanoSAMic(config, semantic_only=not instances).eval()
    return model, mode


# ----------------------------------------------------------------------------- FLOPs


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """The CPU attention kernel, which FlopCounterMode does not know: as any SDPA."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


CUSTOM_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def count_flops(fn) -> tuple[float, Any]:
    """FLOPs of ``fn()`` (2 per multiply-add) and its result."""
    with FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        out = fn()
    return float(counter.get_total_flops()), out


@contextmanager
def _serial_images():
    """The encoder's image-parallel CPU path off: worker threads would leave the fake mode."""
    before = os.environ.get(ENV_SWITCH)
    os.environ[ENV_SWITCH] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENV_SWITCH]
        else:
            os.environ[ENV_SWITCH] = before


def _semantic_flops(model: PanoSAMic) -> dict[str, float]:
    """Encoder, fusion and decoder FLOPs of one panorama (see the module docstring), and
    ``"decoder ours"``: the decoder as our inference computes it."""
    cfg = model.config
    enc = cfg.encoder
    passes = cfg.num_views * len(cfg.modalities)  # N*views*M encoder rows for N = 1
    canvas = torch.zeros(1, 3, enc.img_size, enc.img_size)  # (1, 3, S, S): one pass
    one_pass, _ = count_flops(lambda: model.image_encoder(canvas, with_neck=True))
    flops = {"encoder": one_pass * passes}
    decoder = model.semantic_decoder
    if cfg.basic_fusion:
        # (N*views, M*P, G, G): the modalities' necks stacked on channels
        stacked = torch.zeros(
            cfg.num_views, passes // cfg.num_views * enc.out_chans, enc.grid_size, enc.grid_size
        )
        flops["fusion"] = 0.0
        flops["decoder"], _ = count_flops(lambda: decoder(stacked))
        flops["decoder ours"] = flops["decoder"]
        return flops
    grid = (passes, enc.embed_dim, enc.grid_size, enc.grid_size)  # (N*views*M, E, G, G)
    branches = [torch.zeros(grid) for _ in enc.global_attn_indexes]
    flops["fusion"], fused = count_flops(lambda: model.feature_fuser(branches))

    def reference_decoder() -> Tensor:
        x = add_view_positional_encoding(fused) if cfg.dual_view_fusion else fused
        logits = decoder.decoder_head(x)
        return logits if decoder.decoder_attention is None else decoder.blend_views(logits)

    flops["decoder"], _ = count_flops(reference_decoder)
    # the fusion blocks' outputs before their last upsampling: B x (N*views, P, 2G, 2G)
    block_map = (cfg.num_views, enc.out_chans, 2 * enc.grid_size, 2 * enc.grid_size)
    before_upsampling = [torch.zeros(block_map) for _ in enc.global_attn_indexes]

    def our_decoder() -> Tensor:
        logits = decoder.head_from_blocks(before_upsampling, positional=cfg.dual_view_fusion)
        return logits if decoder.decoder_attention is None else decoder.blend_views(logits)

    flops["decoder ours"], _ = count_flops(our_decoder)
    return flops


def _prompt_batch_flops(model: PanoSAMic, size: int) -> tuple[float, float]:
    """FLOPs of one batch of ``size`` point prompts on one embedding: SAM's mask decoder in
    SAM's order, and our factored decoder (bound to the embedding, masks for every prompt)."""
    cfg, amg, enc = model.config, model.config.amg, model.config.encoder
    layout = cfg.neck_layout
    neck = torch.zeros(1, enc.out_chans, enc.grid_size, enc.grid_size)  # (1, P, G, G)
    sparse = torch.zeros(size, 2, enc.out_chans)  # (n, 2, P): the point and its padding point
    image_pe, dense = prompt_context(model.prompt_encoder)
    sam, _ = count_flops(
        lambda: model.mask_decoder(neck, image_pe, sparse, dense, amg.multimask_output)
    )

    def factored() -> Tensor:
        bound = prompt_decoder(amg, model.mask_decoder, neck, image_pe, dense)
        decoded = bound.run_transformer(sparse)
        needed = None
        if bound.mask_side is not None:
            needed = low_res_region(layout.canvas, bound.mask_side, layout.network_hw)
        return bound.masks(decoded, torch.arange(size), needed)

    ours, _ = count_flops(factored)
    return sam, ours


def _instance_flops(model: PanoSAMic, prompts: int) -> tuple[float, float, int]:
    """SAM-order and factored FLOPs of the instance path with ``prompts`` points per
    embedding, and the number of embeddings (views x the mask generation's modalities)."""
    cfg, amg = model.config, model.config.amg
    embeddings = cfg.num_views * len(amg.modalities or cfg.modalities)
    full, rest = divmod(prompts, amg.points_per_batch)
    sam = ours = 0.0
    for size, batches in ((amg.points_per_batch, full), (rest, 1)):
        if size and batches:
            batch_sam, batch_ours = _prompt_batch_flops(model, size)
            sam, ours = sam + batches * batch_sam, ours + batches * batch_ours
    return sam * embeddings, ours * embeddings, embeddings


def efficiency_report(
    config: PanoSAMicConfig, title: str | None = None, instances: bool = True
) -> EfficiencyReport:
    """Parameters and FLOPs per component of the model ``config`` describes.

    Args:
        config: the model (e.g. from :func:`published_config` or :func:`json_config`).
        title: what the report's first line calls it (default: :func:`describe`).
        instances: also count the instance path (SAM's prompt encoder and mask decoder).
    """
    start = time.perf_counter()
    layout = config.neck_layout
    prompts = len(point_grid(config.amg, layout.canvas, layout.network_hw)) if instances else 0
    model, mode = fake_model(config, instances)
    params = parameter_counts(model)
    with mode, torch.no_grad(), _serial_images():
        flops = _semantic_flops(model)
        sam, ours, embeddings = _instance_flops(model, prompts) if instances else (0.0, 0.0, 0)
    flops["instance path"] = sam
    components = [
        Component(name, *params[name], flops[name])
        for name in COMPONENTS
        if name != "instance path" or instances
    ]
    label = describe(config)
    return EfficiencyReport(
        title=f"{title}: {label}" if title else label,
        components=components,
        encoder_passes=config.num_views * len(config.modalities),
        instance_embeddings=embeddings,
        prompts_per_embedding=prompts,
        decoder_flops_ours=flops["decoder ours"],
        instance_flops_ours=ours,
        seconds=time.perf_counter() - start,
        config={"vit_model": config.vit_model, "modalities": list(config.modalities)},
    )


# ----------------------------------------------------------------------------- the table


def _giga(value: float) -> str:
    return f"{value / 1e9:,.1f}"


def format_report(report: EfficiencyReport) -> str:
    """The report as a table (parameters, GFLOPs and GMACs per component) with notes."""
    h, w = PANORAMA_HW
    lines = [
        f"PanoSAMic {report.title}",
        f"one {h} x {w} panorama: {report.encoder_passes} encoder passes (every modality in "
        "every view)",
        "",
        f"{'component':<16}{'parameters':>15}{'trainable':>14}{'frozen':>15}"
        f"{'GFLOPs':>12}{'GMACs':>12}",
    ]
    rows = [*report.components, report.total(False)]
    if any(c.name == "instance path" for c in report.components):
        rows.append(report.total(True))
    for c in rows:
        name = {"semantic": "total, semantic", "total": "total"}.get(c.name, c.name)
        if c.name == "semantic":
            lines.append("-" * 84)
        lines.append(
            f"{name:<16}{c.parameters:>15,}{c.trainable:>14,}{c.frozen:>15,}"
            f"{_giga(c.flops):>12}{_giga(c.macs):>12}"
        )
    semantic = report.total(False)
    lines += [
        "",
        "FLOPs: 2 per multiply-add (torch.utils.flop_counter: matrix products, convolutions,",
        "attention); MACs = FLOPs / 2, the unit of fvcore (the reference's efficiency report)",
        f"and of the paper's TFLOPs: {semantic.macs / 1e12:.2f} T without the instance path, as "
        "the paper counts.",
        f"trainable {semantic.trainable / 1e6:.2f} M, "
        f"{100 * semantic.trainable / max(1, report.total().parameters):.2f} % of all parameters.",
        f"decoder: our inference applies its first 1x1 convolution before the upsampling: "
        f"{_giga(report.decoder_flops_ours)} GFLOPs.",
    ]
    if report.instance_embeddings:
        lines += [
            f"instance path: SAM's mask decoder on {report.prompts_per_embedding} prompts x "
            f"{report.instance_embeddings} embeddings, in SAM's order;",
            f"our factored decoder: at most {_giga(report.instance_flops_ours)} GFLOPs.",
        ]
    lines.append(f"counted in {report.seconds:.1f} s on fake tensors (no weights, no memory)")
    return "\n".join(lines)


__all__ = [
    "COMPONENTS",
    "Component",
    "EfficiencyReport",
    "count_flops",
    "count_parameters",
    "describe",
    "efficiency_report",
    "fake_model",
    "format_report",
    "json_config",
    "parameter_counts",
    "published_config",
]
