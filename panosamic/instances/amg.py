"""SAM's automatic mask generation on one embedding (REFERENCE_BEHAVIOUR.md 6.1, 6.2).

The reference upsamples every candidate mask (3 per point) to the padded
canvas before it filters them. Here every step runs as early as its inputs
allow, which leaves the result unchanged:

1. the predicted-IoU filter needs no mask, so it runs on the transformer's
   output, and only the prompts with a surviving candidate get their
   low-resolution masks (:meth:`GridMaskDecoder.masks`);
2. only the surviving candidates are upscaled and upsampled, and only the
   part of the canvas the image crop keeps: the image tokens that the kept
   low-res rows come from (:meth:`GridMaskDecoder.masks`) and the canvas rows
   kept (:func:`upsample_to_image`), bit-identical to computing the whole
   canvas and cropping;
3. the stability score and the box need the upsampled logits, so they are
   computed right after upsampling, a few masks at a time, into a reused
   buffer; a stable candidate is kept at low resolution with its box;
4. SAM's box NMS runs on those boxes, and only the masks it keeps are
   upsampled again (the same numbers) and thresholded at ``mask_threshold``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.resize import resize_to
from .config import AMGConfig
from .exact_decoder import ExactMaskDecoder
from .factored_decoder import FactoredMaskDecoder
from .mask_decoding import prompt_slices
from .masks import MaskSet, remove_small_regions
from .workspace import Workspace

UPSAMPLE_MASKS = 4  # masks upsampled together (4 x 512 x 1024 floats = 8 MiB: cached)

Stage = Callable[[str], AbstractContextManager[Any]]


def no_stage(name: str) -> AbstractContextManager[Any]:
    return nullcontext()


@dataclass
class Probe:
    """Where the instance path reports: ``stage(name)`` times a block (a context
    manager, e.g. ``PanoSAMic.stage``), ``counts`` collects candidate numbers."""

    stage: Stage = no_stage
    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, n: int) -> None:
        with self._lock:  # embeddings may report from several worker threads
            self.counts[name] = self.counts.get(name, 0) + int(n)


def point_grid(amg: AMGConfig, canvas: int, network_hw: tuple[int, int]) -> Tensor:
    """(n, 2) float64 (x, y) prompt points on the canvas, y the outer loop.

    ``"canvas"`` (the reference): ``points_per_side`` squared points spread over
    the padded canvas, ``linspace(1/2n, 1 - 1/2n, n) * canvas`` on both axes.
    ``"image"``: the same points without those in the zero padding (for a
    512 x 1024 image on the 1024 canvas, the upper half).
    """
    from segment_anything.utils.amg import build_point_grid

    points = torch.from_numpy(build_point_grid(amg.points_per_side) * canvas)
    if amg.point_grid == "image":
        h, w = network_hw
        points = points[(points[:, 0] < w) & (points[:, 1] < h)]
    return points


def encode_points(prompt_encoder: nn.Module, points: Tensor, batch: int) -> Tensor:
    """Sparse embeddings (n, 2, C) of single foreground points, ``batch`` at a time as in SAM.

    The embedding does not depend on the image, so one call serves every
    image, view and modality.
    """
    device = prompt_encoder.no_mask_embed.weight.device
    # float64 like SAM's own grid (exact either way for the reference's grid); MPS has none
    dtype = torch.float32 if device.type == "mps" else points.dtype
    coords = points.to(device=device, dtype=dtype)[:, None, :]
    labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=device)
    chunks = []
    for sl in prompt_slices(coords.shape[0], batch):
        sparse, _ = prompt_encoder(points=(coords[sl], labels[sl]), boxes=None, masks=None)
        chunks.append(sparse)
    return torch.cat(chunks)


def prompt_context(prompt_encoder: nn.Module) -> tuple[Tensor, Tensor]:
    """(image_pe, dense_embedding), each (1, C, h, w): the same for every point prompt."""
    pe = prompt_encoder.get_dense_pe()
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(pe)
    return pe, dense


def low_res_region(canvas: int, side: int, network_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of ``side`` x ``side`` low-res masks that :func:`upsample_to_image` reads.

    Bilinear upsampling by an integer factor f reads, for the first h output
    rows, the source rows below ceil(h / f) + 1 (the same for columns).
    """
    if canvas % side:
        return side, side
    f = canvas // side
    h, w = network_hw
    return min(side, -(-h // f) + 1), min(side, -(-w // f) + 1)


def upsample_to_image(
    low: Tensor,
    canvas: int,
    network_hw: tuple[int, int],
    out_hw: tuple[int, int],
    side: int | None = None,
    work: Workspace | None = None,
) -> Tensor:
    """(k, s, s) low-res logits, or their top-left crop -> (k, H, W) logits at the input resolution.

    Equals bilinear upsampling to the ``canvas`` square, cropping to the
    network's image (h, w) and :func:`resize_to` (H, W), bit for bit, but only
    computes the canvas rows and columns the crop keeps (:func:`low_res_region`).
    ``side``: s, when ``low`` is a crop that covers at least that region;
    ``work``: upsample into its buffer (valid until the next call with it).
    """
    h, w = network_hw
    s = side or low.shape[-1]
    rows, cols = low_res_region(canvas, s, network_hw)
    if low.shape[-2] < rows or low.shape[-1] < cols:
        raise ValueError(
            f"low-res masks {tuple(low.shape[-2:])} do not cover the {rows} x {cols} "
            f"region that upsampling {s} x {s} masks to {canvas} and cropping to {h} x {w} needs"
        )
    size = (canvas, canvas) if canvas % s else (rows * (canvas // s), cols * (canvas // s))
    src = low[:, None, :rows, :cols]
    if work is None:
        up = F.interpolate(src, size=size, mode="bilinear", align_corners=False)
    else:  # the kernel F.interpolate runs, into a reused buffer
        out = work.get("upsampled", (low.shape[0], 1, *size))
        up = torch.ops.aten.upsample_bilinear2d.out(src, size, False, None, None, out=out)
    return resize_to(up[..., :h, :w], out_hw)[:, 0]


def stability_scores(logits: Tensor, amg: AMGConfig) -> Tensor:
    """SAM's stability score of (k, H, W) logits -> (k,) float32."""
    from segment_anything.utils.amg import calculate_stability_score

    return calculate_stability_score(logits, amg.mask_threshold, amg.stability_score_offset)


def logit_boxes(logits: Tensor, threshold: float) -> Tensor:
    """SAM's XYXY boxes of the masks ``logits > threshold`` -> (k, 4) int64, [0, 0, 0, 0]
    when empty (``batched_mask_to_box``'s numbers).

    A row holds a mask pixel iff its largest logit is above the threshold, so two
    reductions of the logits replace the boolean masks.
    """
    rows = logits.amax(-1) > threshold  # (k, H)
    cols = logits.amax(-2) > threshold  # (k, W)
    top, bottom = _first_last(rows)
    left, right = _first_last(cols)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    return boxes * rows.any(-1, keepdim=True)


def _first_last(inside: Tensor) -> tuple[Tensor, Tensor]:
    """First and last True index along the last axis of (k, n) bool (0 where none)."""
    n = inside.shape[-1]
    first = inside.byte().argmax(-1)  # the first of equal maxima
    last = n - 1 - inside.flip(-1).byte().argmax(-1)
    return first, last


def box_nms(boxes: Tensor, iou: Tensor, amg: AMGConfig) -> Tensor:
    """Indices of (k, 4) boxes kept by SAM's box NMS (one category, score = predicted IoU),
    best first."""
    from torchvision.ops import batched_nms

    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return batched_nms(
        boxes.float(), iou, torch.zeros_like(iou, dtype=torch.long), amg.box_nms_thresh
    )


def remove_empty(kept: MaskSet, amg: AMGConfig, probe: Probe) -> MaskSet:
    """Small-region removal (when enabled) and empty-mask removal (reference 6.2 steps 5, 6)."""
    if amg.min_mask_region_area > 0:
        with probe.stage("small_regions"):
            masks = remove_small_regions(kept.masks, amg.min_mask_region_area)
            kept = MaskSet(masks, kept.iou, kept.stability)
    return kept.select(torch.nonzero(kept.areas > 0).flatten())


PromptDecoder = ExactMaskDecoder | FactoredMaskDecoder


def prompt_decoder(
    amg: AMGConfig, mask_decoder: nn.Module, embedding: Tensor, image_pe: Tensor, dense: Tensor
) -> PromptDecoder:
    """SAM's mask decoder bound to one (1, C, h, w) embedding, computed as ``amg.decoder`` says."""
    kind = FactoredMaskDecoder if amg.decoder == "factored" else ExactMaskDecoder
    return kind(mask_decoder, embedding, image_pe, dense)


def _mask_token_slice(amg: AMGConfig) -> slice:
    return slice(1, None) if amg.multimask_output else slice(0, 1)


def generate_masks(
    decoder: PromptDecoder,
    sparse: Tensor,
    amg: AMGConfig,
    canvas: int,
    network_hw: tuple[int, int],
    out_hw: tuple[int, int],
    probe: Probe | None = None,
    on_batch: Callable[[int], Any] | None = None,
) -> MaskSet:
    """The masks SAM's AMG finds on one embedding (reference 6.2), fast order.

    Args:
        decoder: the mask decoder bound to this embedding.
        sparse: (n, 2, C) point prompt embeddings (:func:`encode_points`).
        canvas, network_hw, out_hw: canvas side, the network's image (h, w)
            on it, the output (H, W).
        probe: receives stage timings and candidate counts.
        on_batch: called with 1 after each batch of points (a progress bar).
    """
    probe = probe or Probe()
    tokens = _mask_token_slice(amg)
    side = decoder.mask_side
    # only the low-res rows and columns that the image (not the padding) needs
    needed = None if side is None else low_res_region(canvas, side, network_hw)
    upsampling = Upsampling(canvas, network_hw, out_hw, side, Workspace(sparse))
    stable: list[StableCandidates] = []
    for sl in prompt_slices(sparse.shape[0], amg.points_per_batch):
        with probe.stage("mask_decoder"):
            decoded = decoder.run_transformer(sparse[sl])
        if on_batch is not None:
            on_batch(1)
        with probe.stage("filtering"):
            iou = decoded.iou[:, tokens]
            passed = iou >= amg.pred_iou_thresh
            prompts = torch.nonzero(passed.any(1)).flatten()
        probe.count("candidates", passed.numel())
        probe.count("after_iou_filter", int(passed.sum()))
        if len(prompts) == 0:
            continue
        with probe.stage("mask_upscaling"):
            low = decoder.masks(decoded, prompts, needed)[:, tokens]
        chosen = passed[prompts]
        stable.append(_stable_candidates(low[chosen], iou[prompts][chosen], amg, upsampling, probe))
    candidates = StableCandidates.cat(stable, sparse.device)
    probe.count("after_stability_filter", len(candidates.iou))
    with probe.stage("nms"):
        keep = box_nms(candidates.boxes, candidates.iou, amg)
    with probe.stage("upsampling"):
        masks = _binary_masks(candidates.low[keep], upsampling, amg.mask_threshold)
    kept = MaskSet(masks, candidates.iou[keep], candidates.stability[keep])
    result = remove_empty(kept, amg, probe)
    probe.count("after_nms", len(result))
    return result


def _binary_masks(low: Tensor, upsampling: Upsampling, threshold: float) -> Tensor:
    """(k, r, c) low-res logits -> (k, H, W) bool masks ``logits > threshold``, a few at a time."""
    if len(low) == 0:
        return torch.zeros(0, *upsampling.out_hw, dtype=torch.bool, device=low.device)
    chunks = prompt_slices(len(low), UPSAMPLE_MASKS)
    return torch.cat([upsampling(low[sl]) > threshold for sl in chunks])


@dataclass
class Upsampling:
    """:func:`upsample_to_image` with its geometry and a reused buffer: ``(k, r, c)`` low-res
    logits -> ``(k, H, W)`` logits, valid until the next call."""

    canvas: int
    network_hw: tuple[int, int]
    out_hw: tuple[int, int]
    side: int | None
    work: Workspace

    def __call__(self, low: Tensor) -> Tensor:
        return upsample_to_image(
            low, self.canvas, self.network_hw, self.out_hw, self.side, self.work
        )


@dataclass
class StableCandidates:
    """Candidates that passed both filters, at low resolution, with their boxes.

    ``low``: (k, r, c) low-res logits; ``iou``, ``stability``: (k,); ``boxes``:
    (k, 4) SAM's XYXY boxes of the upsampled masks. Only the masks that survive
    the box NMS are upsampled again (the same numbers) and kept as booleans.
    """

    low: Tensor
    iou: Tensor
    stability: Tensor
    boxes: Tensor

    @staticmethod
    def cat(sets: list[StableCandidates], device: torch.device) -> StableCandidates:
        if not sets:
            empty = torch.zeros(0, device=device)
            return StableCandidates(empty.view(0, 0, 0), empty, empty, empty.view(0, 4).long())
        return StableCandidates(
            *(
                torch.cat([getattr(s, f) for s in sets])
                for f in ("low", "iou", "stability", "boxes")
            )
        )


def _stable_candidates(
    low: Tensor, iou: Tensor, amg: AMGConfig, upsampling: Upsampling, probe: Probe
) -> StableCandidates:
    """Upsample IoU-filtered candidates (k, r, c) a few at a time and keep the stable ones."""
    kept: list[StableCandidates] = []
    for sl in prompt_slices(low.shape[0], UPSAMPLE_MASKS):
        with probe.stage("upsampling"):
            logits = upsampling(low[sl])
        with probe.stage("filtering"):
            stability = stability_scores(logits, amg)
            ok = torch.nonzero(stability >= amg.stability_score_thresh).flatten()
            if len(ok):
                boxes = logit_boxes(logits, amg.mask_threshold)[ok]
                kept.append(StableCandidates(low[sl][ok], iou[sl][ok], stability[ok], boxes))
    return StableCandidates.cat(kept, low.device)
