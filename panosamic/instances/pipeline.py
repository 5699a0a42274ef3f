"""PanoSAMic's instance masks: SAM's AMG per modality and view, merged (reference section 6).

For every image: SAM's automatic mask generation on each modality's neck
embedding (:mod:`.amg`), a greedy mask NMS across the modalities, and in dual
view the fusion of the unshifted and the shifted view (:mod:`.mask_merge`).
The output is the reference's: per image a list of dicts ``segmentation``
(bool (H, W) at the input resolution), ``area``, ``predicted_iou``,
``stability_score``, largest area first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .amg import (
    MaskSet,
    Probe,
    encode_points,
    generate_masks,
    point_grid,
    prompt_context,
    prompt_decoder,
)
from .config import PanoSAMicConfig
from .cpu_parallel import map_parallel
from .mask_merge import fuse_dual_view, greedy_merge

STAGES = (
    "prompt_encoding",
    "mask_decoder",
    "mask_upscaling",
    "upsampling",
    "filtering",
    "nms",
    "small_regions",
    "merges",
    "dual_view_fusion",
)


def embedding_rows(config: PanoSAMicConfig, image: int, view: int) -> list[int]:
    """Rows of the encoder neck batch that hold ``image``'s modalities in ``view``.

    The batch order is [img0 v0 m0..mM-1, img0 v1 m0..., img1 ...]; only the
    modalities chosen for mask generation (``amg.modalities``) are returned.
    """
    names = config.modalities
    chosen = config.amg.modalities or names
    first = (image * config.num_views + view) * len(names)
    return [first + names.index(m) for m in chosen]


@torch.no_grad()
def instance_masks(
    prompt_encoder: nn.Module,
    mask_decoder: nn.Module,
    neck: Tensor,
    config: PanoSAMicConfig,
    sizes: Sequence[tuple[int, int]],
    *,
    probe: Probe | None = None,
    progress: bool = False,
) -> list[list[dict[str, Any]]]:
    """Instance masks of every image of a batch.

    Args:
        prompt_encoder, mask_decoder: SAM's modules.
        neck: (N * views * M, C, G, G) the encoder neck, batch order as in
            :func:`embedding_rows`.
        config: the model config; its ``amg`` section sets every constant.
        sizes: each image's input (H, W): the masks' resolution.
        probe: receives the time of each stage (:data:`STAGES`) and candidate counts.
        progress: show a progress bar over the point batches.
    """
    if config.amg.exact_reference_order:
        from .instances_reference import instance_masks_reference

        return instance_masks_reference(prompt_encoder, mask_decoder, neck, config, sizes, probe)
    return _instance_masks(prompt_encoder, mask_decoder, neck, config, sizes, probe, progress)


def _instance_masks(
    prompt_encoder: nn.Module,
    mask_decoder: nn.Module,
    neck: Tensor,
    config: PanoSAMicConfig,
    sizes: Sequence[tuple[int, int]],
    probe: Probe | None,
    progress: bool,
) -> list[list[dict[str, Any]]]:
    probe = probe or Probe()
    stage = probe.stage
    amg = config.amg
    canvas = config.encoder.img_size
    network_hw = config.input_size
    with stage("prompt_encoding"):
        points = point_grid(amg, canvas, network_hw)
        sparse = encode_points(prompt_encoder, points, amg.points_per_batch)
        image_pe, dense = prompt_context(prompt_encoder)
    views = range(config.num_views)
    per_image = [
        [(view, row) for view in views for row in embedding_rows(config, i, view)]
        for i in range(len(sizes))
    ]
    bar = tqdm(
        total=sum(map(len, per_image)) * -(-len(points) // amg.points_per_batch),
        desc="instance masks",
        unit="batch",
        disable=not progress,
    )

    def masks_of(size: tuple[int, int], row: int) -> MaskSet:
        with stage("mask_decoder"):
            decoder = prompt_decoder(amg, mask_decoder, neck[row : row + 1], image_pe, dense)
        return generate_masks(decoder, sparse, amg, canvas, network_hw, size, probe, bar.update)

    outputs = []
    with bar:
        for size, jobs in zip(sizes, per_image, strict=True):
            # one image at a time, so only its masks are held before the merges
            rows = [row for _, row in jobs]
            sets = _map_embeddings(partial(masks_of, size), rows, neck.device)
            per_view = []
            for view in views:
                mine = [s for s, (v, _) in zip(sets, jobs, strict=True) if v == view]
                with stage("merges"):
                    merged = greedy_merge(MaskSet.cat(mine, size, neck.device), amg.merge_threshold)
                per_view.append(merged)
            if len(per_view) == 2:
                with stage("dual_view_fusion"):
                    per_view = [fuse_dual_view(per_view[0], per_view[1], amg)]
            outputs.append(per_view[0].to_dicts())
    return outputs


def _map_embeddings(
    fn: Callable[[int], MaskSet], rows: list[int], device: torch.device
) -> list[MaskSet]:
    """The embeddings' masks; on a CPU the embeddings run in parallel worker threads
    (:func:`~.cpu_parallel.map_parallel`: the same operations, fewer thread synchronisations)."""
    if device.type != "cpu":
        return [fn(row) for row in rows]
    return map_parallel(fn, rows)
