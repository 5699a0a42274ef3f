"""The assembled PanoSAMic model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..hub.files import check_no_extra, check_tensors
from ..instances.amg import Probe
from ..instances.pipeline import instance_masks
from ..instances.prompt_modules import build_prompt_modules
from ..instances.refine import refine_semantic_with_instances
from ..utils.profiling import StageTimer
from ..utils.resize import resize_to
from .config import PRECISIONS, PanoSAMicConfig
from .image_encoder import ImageEncoderViT
from .inputs import encoder_batch, validate_batch
from .mcbam import FeatureFuser
from .pretrained import load_pretrained
from .semantic_decoder import BaselineDecoder, SemanticDecoder, add_view_positional_encoding

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "int8": torch.bfloat16,  # the encoder's linear layers int8, everything else bfloat16
}
FROZEN_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
TRAINABLE_PREFIXES = ("feature_fuser.", "semantic_decoder.")


def prompt_modules_for(config: PanoSAMicConfig) -> tuple[nn.Module, nn.Module]:
    """SAM's prompt encoder and mask decoder, sized for ``config``'s encoder."""
    enc = config.encoder
    return build_prompt_modules(config.prompt_decoder, enc.out_chans, enc.grid_size, enc.img_size)


def expected_shapes(
    config: PanoSAMicConfig, semantic_only: bool = False
) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the model, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = PanoSAMic(config, semantic_only=semantic_only)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


class PanoSAMic(nn.Module):
    """Semantic segmentation of equirectangular panoramas on a frozen SAM encoder.

    Call it with a list of dicts, one per image, each mapping a modality name
    (``image``, ``depth``, ``normals``) to a float tensor (3, H, W) with values
    in [0, 255] and W = 2 H. It returns one dict per image with ``sem_preds``,
    the (K, H, W) logits at the input resolution, and ``instance_masks``: SAM's
    masks merged across modalities and views (a list of dicts ``segmentation``
    bool (H, W), ``area``, ``predicted_iou``, ``stability_score``, largest
    first; see :mod:`panosamic.model.instances`), or ``[]`` when off.

    Args:
        config: the architecture; ``config.amg`` sets the instance path.
        semantic_only: build no prompt encoder / mask decoder and never compute
            instance masks.
        precision: ``"fp32"`` (default: the reference's numbers), or ``"bf16"`` /
            ``"fp16"`` to run the network under autocast (logits come back in
            float32), or ``"int8"`` (CPUs only): the encoder's linear layers as
            int8 products (:mod:`~panosamic.model.int8`), the rest as ``"bf16"``.
            May be changed later through the ``precision`` attribute.
    """

    FROZEN_PREFIXES = FROZEN_PREFIXES
    TRAINABLE_PREFIXES = TRAINABLE_PREFIXES

    def __init__(
        self, config: PanoSAMicConfig, semantic_only: bool = False, precision: str = "fp32"
    ) -> None:
        super().__init__()
        self.config = config
        self.semantic_only = semantic_only
        self.precision = precision
        self.stage_timer: StageTimer | None = None
        # Recompute each fusion block in the backward pass instead of keeping its activations.
        self.gradient_checkpointing = False
        enc = config.encoder
        m = len(config.modalities)
        self.image_encoder = ImageEncoderViT(enc)
        if not semantic_only:
            self.prompt_encoder, self.mask_decoder = prompt_modules_for(config)
        if config.basic_fusion:
            self.semantic_decoder: nn.Module = BaselineDecoder(
                m, enc.out_chans, enc.grid_size, config.num_classes
            )
        else:
            self.feature_fuser = FeatureFuser(
                enc, m, config.channel_attention, config.spatial_attention
            )
            self.semantic_decoder = SemanticDecoder(
                in_channels=enc.num_branches * enc.out_chans,
                channels=enc.out_chans,
                size=4 * enc.grid_size,
                num_classes=config.num_classes,
                dual_view=config.dual_view_fusion,
            )
        self.freeze_sam()

    # ------------------------------------------------------------------ setup
    def freeze_sam(self) -> None:
        """SAM's parts stay frozen; only the fusion and the decoder train."""
        for name, param in self.named_parameters():
            if name.startswith(FROZEN_PREFIXES):
                param.requires_grad_(False)

    def train(self, mode: bool = True) -> PanoSAMic:
        super().train(mode)
        for name in ("image_encoder", "prompt_encoder", "mask_decoder"):
            module = getattr(self, name, None)
            if module is not None:
                module.eval()
        return self

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """The tensors a Hub checkpoint holds: ``feature_fuser.*`` and ``semantic_decoder.*``."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(TRAINABLE_PREFIXES)}

    def load_trainable_state_dict(
        self, state: Mapping[str, Tensor], source: str = "the checkpoint"
    ) -> None:
        """Load exactly the trainable tensors: every one present with its shape, nothing else
        (:class:`~panosamic.hub.files.CheckpointError` naming ``source`` otherwise)."""
        expected = {k: tuple(v.shape) for k, v in self.trainable_state_dict().items()}
        check_tensors(state, expected, source)
        check_no_extra(state, expected, source)
        self.load_state_dict(state, strict=False)

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {value!r}")
        self._precision = value

    def autocast(self) -> AbstractContextManager:
        """The autocast context of the chosen precision (a no-op for fp32)."""
        dtype = AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def stage(self, name: str) -> AbstractContextManager:
        """Time a stage when a :class:`StageTimer` is attached (``model.stage_timer``)."""
        return (
            nullcontext() if self.stage_timer is None else self.stage_timer.stage(name, self.device)
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def set_amg(self, **changes: Any) -> PanoSAMic:
        """Change the instance path's settings (fields of :class:`~panosamic.model.config.AMGConfig`).

        For example ``model.set_amg(points_per_side=16, point_grid="image")``.
        Returns the model.
        """
        self.config = replace(self.config, amg=self.config.amg.updated(changes))
        return self

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        batched_input: Sequence[Mapping[str, Tensor]],
        *,
        semantic_only: bool | None = None,
        refine: bool = False,
        progress: bool = False,
    ) -> list[dict[str, Any]]:
        """Segment a batch of panoramas; see the class docstring for the format.

        Args:
            semantic_only: skip the instance masks for this call (default: as built).
            refine: also return ``refined_sem_preds`` (one-hot (K, H, W) float
                after the instance majority vote, :func:`~panosamic.model.
                instance_semantic_fusion.refine_semantic_with_instances`) and
                ``labels`` ((H, W) int64, its argmax).
            progress: show a progress bar over the instance path's point batches.
        """
        sizes = validate_batch(batched_input, self.config.modalities)
        semantic_only = self.semantic_only if semantic_only is None else semantic_only
        if not semantic_only and self.semantic_only:
            raise ValueError("this model was built semantic_only=True: it has no SAM mask decoder")
        if refine and semantic_only:
            raise ValueError("refine=True needs the instance masks: drop semantic_only=True")
        features = self.forward_features(batched_input, keep_neck=not semantic_only, keep_all=False)
        with self.stage("postprocess"):
            logits = self.postprocess(features["decoder_out"])
            sem_preds = [resize_to(logits[i : i + 1], size)[0] for i, size in enumerate(sizes)]
        masks: list[list[dict[str, Any]]] = [[] for _ in sizes]
        if not semantic_only:
            masks = self.instance_masks(features["encoder_neck"], sizes, progress=progress)
        outputs = []
        for preds, image_masks in zip(sem_preds, masks, strict=True):
            out = {"sem_preds": preds, "instance_masks": image_masks}
            if refine:
                with self.stage("refine"):
                    out["refined_sem_preds"] = refine_semantic_with_instances(preds, image_masks)
                    out["labels"] = out["refined_sem_preds"].argmax(dim=0)
            outputs.append(out)
        return outputs

    def instance_masks(
        self,
        neck: Tensor,
        sizes: Sequence[tuple[int, int]],
        *,
        counts: dict[str, int] | None = None,
        progress: bool = False,
    ) -> list[list[dict[str, Any]]]:
        """Instance masks from the encoder neck ((N*views*M, P, G, G)), one list per image.

        Stages are timed as ``instances.<stage>`` when a :class:`StageTimer` is
        attached; ``counts`` (a dict) receives the candidate numbers per filter.
        """
        if self.semantic_only:
            raise ValueError("this model was built semantic_only=True: it has no SAM mask decoder")
        probe = Probe(stage=lambda name: self.stage(f"instances.{name}"))
        if counts is not None:
            probe.counts = counts
        return instance_masks(
            self.prompt_encoder,
            self.mask_decoder,
            neck.to(self.mask_decoder.iou_token.weight.dtype),
            self.config.neck_layout,
            self.config.amg,
            sizes,
            probe=probe,
            progress=progress,
        )

    def forward_features(
        self,
        batched_input: Sequence[Mapping[str, Tensor]],
        keep_neck: bool = False,
        keep_all: bool = True,
    ) -> dict[str, Any]:
        """Run the network at its own resolution.

        Keys: ``encoder_neck`` ((N*views*M, P, G, G), or None unless ``keep_neck``),
        ``decoder_head`` ((N*views, K, 4G, 4G)), ``decoder_out`` ((N, K, 4G, 4G)).
        With ``keep_all`` also ``branches`` (B x (N*views*M, E, G, G)) and
        ``fused_before_pe`` ((N*views, B*P, 4G, 4G)); without it the fusion and the
        decoder take a leaner, equivalent route that never builds the fused map.
        """
        if self.precision == "int8" and self.device.type != "cpu":
            raise ValueError(
                f"precision 'int8' runs on CPUs only, this model is on {self.device}; "
                "use precision 'bf16' (or 'fp16') on accelerators"
            )
        with self.autocast():
            out = self._features(batched_input, keep_neck, keep_all)
        for key in ("decoder_head", "decoder_out"):
            out[key] = out[key].float()
        return out

    def _features(
        self, batched_input: Sequence[Mapping[str, Tensor]], keep_neck: bool, keep_all: bool
    ) -> dict[str, Any]:
        cfg = self.config
        with self.stage("preprocess"):
            x = encoder_batch(
                batched_input,
                cfg.modalities,
                cfg.num_views,
                cfg.input_size,
                cfg.encoder.img_size,
                self.dtype,
                self.device,
            )
        need_neck = keep_neck or bool(cfg.basic_fusion)
        with torch.no_grad(), self.stage("encoder"):
            neck, branches = self.image_encoder(
                x, with_neck=need_neck, int8=self.precision == "int8"
            )
        del x
        out: dict[str, Any] = {"encoder_neck": neck}
        decoder = self.semantic_decoder
        if cfg.basic_fusion:
            m = len(cfg.modalities)
            stacked = neck.reshape(neck.shape[0] // m, m * neck.shape[1], *neck.shape[2:])
            with self.stage("decoder"):
                out["decoder_head"] = out["decoder_out"] = decoder(stacked)
            return out
        if keep_all:
            out["branches"] = branches
            with self.stage("fusion"):
                fused = self.feature_fuser(branches)
            out["fused_before_pe"] = fused
            with self.stage("decoder"):
                if cfg.dual_view_fusion:
                    fused = add_view_positional_encoding(fused)
                head = decoder.decoder_head(fused)
        else:
            with self.stage("fusion"):
                blocks = self.feature_fuser.fusion_blocks
                maps = [self._fuse(block, branches.pop(0)) for block in blocks]
            with self.stage("decoder"):
                head = decoder.head_from_blocks(maps, positional=cfg.dual_view_fusion)
        with self.stage("decoder"):
            out["decoder_head"] = head
            out["decoder_out"] = (
                head if decoder.decoder_attention is None else decoder.blend_views(head)
            )
        return out

    def _fuse(self, block: nn.Module, branch: Tensor) -> Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, branch, False, use_reentrant=False)
        return block(branch, final_upsample=False)

    def postprocess(self, logits: Tensor) -> Tensor:
        """(N, K, 4G, 4G) canvas logits -> (N, K, h, w) at the network's input size."""
        s = self.config.encoder.img_size
        h, w = self.config.input_size
        logits = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False)
        return logits[..., :h, :w]

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained_panosamic(
        cls, repo_id_or_path: str | Path, *args: Any, **kwargs: Any
    ) -> PanoSAMic:
        """Load a published (Hub) or local checkpoint with its SAM weights, in ``eval()`` mode.

        The arguments are those of :func:`~panosamic.model.pretrained.load_pretrained`
        after the class (``subfolder``, ``config_path``, ``sam_weights_path``, ...).
        """
        return load_pretrained(cls, repo_id_or_path, *args, **kwargs)
