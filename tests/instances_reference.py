"""Test oracle: the instance path in the reference's order, written plainly.

Every candidate mask is upsampled to the whole canvas before any filter, SAM's
``MaskDecoder`` runs on each batch of 64 points as it is, and the merges
compare masks pixel by pixel in Python loops. It is slow, and it exists so
that the fast path (:mod:`panosamic.instances`) can be checked against it: both
give the same masks, in the same order, with the same scores. Tests and
``benchmarks/bench_instances.py`` call it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from panosamic.instances.amg import Probe, point_grid, stability_scores
from panosamic.instances.config import AMGConfig, NeckLayout
from panosamic.instances.masks import remove_small_regions
from panosamic.utils.resize import resize_to

POSTPROCESS_BATCH = 64  # the reference's batch size for stability scores and boxes

MaskDict = dict[str, Any]


def upsample_to_image_reference(
    low: Tensor, canvas: int, network_hw: tuple[int, int], out_hw: tuple[int, int]
) -> Tensor:
    """The reference's order: upsample to the whole canvas, crop, resize."""
    h, w = network_hw
    up = F.interpolate(low[:, None], size=(canvas, canvas), mode="bilinear", align_corners=False)
    return resize_to(up[..., :h, :w], out_hw)[:, 0]


def amg_reference(
    prompt_encoder: nn.Module,
    mask_decoder: nn.Module,
    embedding: Tensor,
    amg: AMGConfig,
    canvas: int,
    network_hw: tuple[int, int],
    out_hw: tuple[int, int],
    probe: Probe | None = None,
) -> list[MaskDict]:
    """Reference 6.2 on one (1, C, G, G) embedding, in the reference's order."""
    from segment_anything.utils.amg import batched_mask_to_box
    from torchvision.ops import batched_nms

    stage = (probe or Probe()).stage
    points = point_grid(amg, canvas, network_hw).to(embedding.device)
    image_pe = prompt_encoder.get_dense_pe()
    logits, ious = [], []
    for start in range(0, len(points), amg.points_per_batch):
        coords = points[start : start + amg.points_per_batch, None, :]
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
        with stage("prompt_encoding"):
            sparse, dense = prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        with stage("mask_decoder"):
            low, iou = mask_decoder(embedding, image_pe, sparse, dense, amg.multimask_output)
        with stage("upsampling"):
            up = upsample_to_image_reference(low.flatten(0, 1), canvas, network_hw, out_hw)
        with stage("filtering"):
            iou = iou.flatten()
            keep = iou >= amg.pred_iou_thresh
            logits.append(up[keep])
            ious.append(iou[keep])
    with stage("filtering"):
        all_logits = torch.cat(logits)
        all_ious = torch.cat(ious)
        stability = torch.cat(
            [
                stability_scores(all_logits[i : i + POSTPROCESS_BATCH], amg)
                for i in range(0, len(all_logits), POSTPROCESS_BATCH)
            ]
            or [all_ious.new_zeros(0)]
        )
        keep = stability >= amg.stability_score_thresh
        all_logits, all_ious, stability = all_logits[keep], all_ious[keep], stability[keep]
    if len(all_logits) == 0:
        return []
    with stage("nms"):
        boxes = torch.cat(
            [
                batched_mask_to_box(all_logits[i : i + POSTPROCESS_BATCH] > amg.mask_threshold)
                for i in range(0, len(all_logits), POSTPROCESS_BATCH)
            ]
        )
        kept = batched_nms(
            boxes.float(),
            all_ious,
            torch.zeros_like(all_ious, dtype=torch.long),
            amg.box_nms_thresh,
        )
    with stage("small_regions"):
        masks = all_logits[kept] > amg.mask_threshold
        masks = remove_small_regions(masks, amg.min_mask_region_area)
    out = []
    for mask, iou, stab in zip(masks, all_ious[kept], stability[kept], strict=True):
        area = int(mask.sum())
        if area == 0:
            continue
        out.append(
            {
                "segmentation": mask,
                "area": area,
                "predicted_iou": float(iou),
                "stability_score": float(stab),
            }
        )
    return out


def pixel_iou(a: Tensor, b: Tensor) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def merge_masks_greedy_reference(masks: list[MaskDict], threshold: float) -> list[MaskDict]:
    """Reference 6.3: greedy mask NMS by predicted_iou x stability_score, then by area."""
    ordered = sorted(masks, key=lambda m: m["predicted_iou"] * m["stability_score"], reverse=True)
    kept: list[MaskDict] = []
    for mask in ordered:
        if all(pixel_iou(mask["segmentation"], k["segmentation"]) <= threshold for k in kept):
            kept.append(mask)
    return sorted(kept, key=lambda m: m["area"], reverse=True)


def fuse_dual_view_reference(
    unshifted: list[MaskDict], shifted: list[MaskDict], amg: AMGConfig
) -> list[MaskDict]:
    """Reference 6.4: fuse the unshifted view's masks with the shifted view's."""
    unrolled = []
    for m in shifted:
        seg = m["segmentation"]
        seg = torch.roll(seg, shifts=(-seg.shape[-1]) // 2, dims=-1)
        if int(seg.sum()) > 0:
            unrolled.append({**m, "segmentation": seg})
    if not unshifted:
        return unrolled
    if not unrolled:
        return unshifted
    w_iou, w_stab = amg.dual_view_quality_weights

    def quality(m: MaskDict) -> float:
        return w_iou * m["predicted_iou"] + w_stab * m["stability_score"]

    result = list(unshifted)
    appended = []
    for mb in unrolled:
        best, best_iou = None, 0.0
        for ia, ma in enumerate(unshifted):
            value = pixel_iou(mb["segmentation"], ma["segmentation"])
            if value > best_iou:
                best, best_iou = ia, value
        if best is not None and best_iou > amg.dual_view_threshold:
            diff = quality(mb) - quality(unshifted[best])
            margin = amg.dual_view_quality_margin
            if diff > margin or (abs(diff) <= margin and mb["area"] > unshifted[best]["area"]):
                result[best] = mb
        else:
            appended.append(mb)
    return sorted(result + appended, key=lambda m: m["area"], reverse=True)


@torch.no_grad()
def instance_masks_reference(
    prompt_encoder: nn.Module,
    mask_decoder: nn.Module,
    neck: Tensor,
    layout: NeckLayout,
    amg: AMGConfig,
    sizes: Sequence[tuple[int, int]],
    probe: Probe | None = None,
) -> list[list[MaskDict]]:
    """Same contract as :func:`panosamic.instances.pipeline.instance_masks`."""
    probe = probe or Probe()
    stage = probe.stage
    outputs = []
    for i, size in enumerate(sizes):
        per_view = []
        for view in range(layout.num_views):
            masks: list[MaskDict] = []
            for row in layout.rows(i, view, amg.modalities):
                masks += amg_reference(
                    prompt_encoder,
                    mask_decoder,
                    neck[row : row + 1],
                    amg,
                    layout.canvas,
                    layout.network_hw,
                    size,
                    probe,
                )
            with stage("merge_modalities"):
                per_view.append(merge_masks_greedy_reference(masks, amg.merge_threshold))
        if len(per_view) == 2:
            with stage("merge_views"):
                per_view = [fuse_dual_view_reference(per_view[0], per_view[1], amg)]
        outputs.append(per_view[0])
    return outputs


def reference_masks(
    model: nn.Module, neck: Tensor, sizes: Sequence[tuple[int, int]], probe: Probe | None = None
) -> list[list[MaskDict]]:
    """:func:`instance_masks_reference` with a PanoSAMic's modules and settings."""
    return instance_masks_reference(
        model.prompt_encoder,
        model.mask_decoder,
        neck.to(model.mask_decoder.iou_token.weight.dtype),
        model.config.neck_layout,
        model.config.amg,
        sizes,
        probe,
    )


def reference_forward(model: nn.Module, batch: list[dict[str, Tensor]]) -> list[list[MaskDict]]:
    """The instance masks of a forward pass, computed in the reference's order."""
    with torch.inference_mode():
        features = model.forward_features(batch, keep_neck=True, keep_all=False)
    sizes = [tuple(sample["image"].shape[-2:]) for sample in batch]
    return reference_masks(model, features["encoder_neck"], sizes)
