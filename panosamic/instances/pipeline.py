"""PanoSAMic's instance masks: SAM's AMG per modality and view, merged (reference section 6).

For every image: SAM's automatic mask generation on each modality's neck
embedding (:mod:`.amg`), a greedy mask NMS across the modalities, and in dual
view the merge of the unshifted and the shifted view (:mod:`.merge`).
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

from ..utils.cpu_parallel import map_parallel
from .amg import Probe, encode_points, generate_masks, point_grid, prompt_context, prompt_decoder
from .config import AMGConfig, NeckLayout
from .masks import MaskSet
from .merge import merge_modalities, merge_views

STAGES = (
    "prompt_encoding",
    "mask_decoder",
    "mask_upscaling",
    "upsampling",
    "filtering",
    "nms",
    "small_regions",
    "merge_modalities",
    "merge_views",
)


@torch.no_grad()
def instance_masks(
    prompt_encoder: nn.Module,
    mask_decoder: nn.Module,
    neck: Tensor,
    layout: NeckLayout,
    amg: AMGConfig,
    sizes: Sequence[tuple[int, int]],
    *,
    probe: Probe | None = None,
    progress: bool = False,
) -> list[list[dict[str, Any]]]:
    """Instance masks of every image of a batch.

    Args:
        prompt_encoder, mask_decoder: SAM's modules.
        neck: (N * V * M, C, G, G) the encoder neck, rows as ``layout`` says.
        layout: the neck's row order and canvas geometry.
        amg: every constant of the mask generation and the merges.
        sizes: each image's input (H, W): the masks' resolution.
        probe: receives the time of each stage (:data:`STAGES`) and candidate counts.
        progress: show a progress bar over the point batches.
    """
    probe = probe or Probe()
    stage = probe.stage
    with stage("prompt_encoding"):
        points = point_grid(amg, layout.canvas, layout.network_hw)
        sparse = encode_points(prompt_encoder, points, amg.points_per_batch)
        image_pe, dense = prompt_context(prompt_encoder)
    views = range(layout.num_views)
    per_image = [
        [(view, row) for view in views for row in layout.rows(i, view, amg.modalities)]
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
        return generate_masks(
            decoder, sparse, amg, layout.canvas, layout.network_hw, size, probe, bar.update
        )

    outputs = []
    with bar:
        for size, jobs in zip(sizes, per_image, strict=True):
            # one image at a time, so only its masks are held before the merges
            rows = [row for _, row in jobs]
            sets = _map_embeddings(partial(masks_of, size), rows, neck.device)
            per_view = []
            for view in views:
                mine = [s for s, (v, _) in zip(sets, jobs, strict=True) if v == view]
                with stage("merge_modalities"):
                    candidates = MaskSet.cat(mine, size, neck.device)
                    per_view.append(merge_modalities(candidates, amg.merge_threshold))
            if len(per_view) == 2:
                with stage("merge_views"):
                    per_view = [merge_views(per_view[0], per_view[1], amg)]
            outputs.append(per_view[0].to_dicts())
    return outputs


def _map_embeddings(
    fn: Callable[[int], MaskSet], rows: list[int], device: torch.device
) -> list[MaskSet]:
    """The embeddings' masks; on a CPU the embeddings run in parallel worker threads
    (:func:`~panosamic.utils.cpu_parallel.map_parallel`: the same operations, fewer
    thread synchronisations)."""
    if device.type != "cpu":
        return [fn(row) for row in rows]
    return map_parallel(fn, rows)
