"""What ``panosamic segment`` writes for one panorama, in its own folder ``OUT/<name>/``.

The kinds (``--save``): ``labels.png`` (class index per pixel, a palette PNG:
the pixel values are the classes, viewers show their colours), ``color.png``,
``overlay.png``, ``panel.png`` (inputs as the model saw them, result, legend,
model and settings), ``instances.png`` (only when there are masks),
``masks.json`` (the instance masks as COCO run-length encoding, in the layout
of segment-anything's ``amg.py --convert-to-rle``: ``segmentation``, ``area``,
``bbox`` XYWH, ``predicted_iou``, ``stability_score``), ``probs.npy`` (class
probabilities, float16 (K, H, W)), ``pointcloud.ply`` (the labelled point cloud,
:mod:`panosamic.clouds`, when the panorama has depth); ``summary.json`` always.

The folder is built aside and renamed into place, so it always holds the files
of one run, complete, and nothing of an earlier run with other settings.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..clouds.ply import write_ply
from ..clouds.points import LabelledCloud, cloud_from_panorama, instance_index_map, voxel_downsample
from ..data.colors import colorize
from ..utils.atomic import replace_directory, save_image, staging_directory, write_json
from ..viewer.page import write_panorama_data
from .inputs import PanoramaInputs
from .pictures import instance_map, legend, overlay, panel

SAVE_KINDS: tuple[str, ...] = (
    "labels",
    "color",
    "overlay",
    "panel",
    "instances",
    "masks",
    "probs",
    "pointcloud",
)
DEFAULT_SAVE: tuple[str, ...] = ("labels", "color", "overlay", "panel", "instances", "masks")
FILE_NAMES = {
    "labels": "labels.png",
    "color": "color.png",
    "overlay": "overlay.png",
    "panel": "panel.png",
    "instances": "instances.png",
    "masks": "masks.json",
    "probs": "probs.npy",
    "pointcloud": "pointcloud.ply",
}
SUMMARY_NAME = "summary.json"


@dataclass
class PanoramaResult:
    """The model's answer for one panorama, on the CPU.

    ``labels``: (H, W) int64; ``masks``: instance mask dicts (``segmentation``
    bool (H, W), ``area``, ``predicted_iou``, ``stability_score``), largest
    first; ``probs``: (K, H, W) float16 class probabilities, when asked for.
    """

    labels: np.ndarray
    masks: list[dict[str, Any]] = field(default_factory=list)
    probs: np.ndarray | None = None
    refined: bool = False
    confidence: np.ndarray | None = None  # (H, W) float32 top class probability


def masks_to_coco_rle(masks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mask dicts -> segment-anything's ``coco_rle`` records (JSON-ready)."""
    import torch
    from segment_anything.utils.amg import (
        batched_mask_to_box,
        box_xyxy_to_xywh,
        coco_encode_rle,
        mask_to_rle_pytorch,
    )

    if not masks:
        return []
    stack = torch.from_numpy(np.stack([np.asarray(m["segmentation"], dtype=bool) for m in masks]))
    rles = mask_to_rle_pytorch(stack)
    boxes = batched_mask_to_box(stack)
    return [
        {
            "segmentation": coco_encode_rle(rle),
            "area": int(mask["area"]),
            "bbox": [int(v) for v in box_xyxy_to_xywh(box).tolist()],
            "predicted_iou": float(mask["predicted_iou"]),
            "stability_score": float(mask["stability_score"]),
        }
        for mask, rle, box in zip(masks, rles, boxes, strict=True)
    ]


def class_shares(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Each class present -> its share of the pixels."""
    fractions = np.bincount(labels.ravel(), minlength=len(class_names)) / labels.size
    return {class_names[k]: float(fractions[k]) for k in np.flatnonzero(fractions)}


def write_outputs(
    folder: Path,
    panorama: PanoramaInputs,
    result: PanoramaResult,
    *,
    kinds: Sequence[str],
    class_names: Sequence[str],
    palette: np.ndarray,
    summary: dict[str, Any],
    caption: str = "",
    cloud_stride: int = 1,
    cloud_voxel: float | None = None,
    viewer_of: Path | None = None,
) -> list[str]:
    """Write one panorama's outputs to ``folder`` (replaced as a whole); returns the file names.

    ``summary`` is completed with the class shares and the files, and written last. With
    ``viewer_of`` (the run's folder), the panorama's viewer data is written there too, from
    memory, showing what the folder holds.
    """
    labels = result.labels
    fractions = np.bincount(labels.ravel(), minlength=len(class_names)) / labels.size
    pictured = {"color", "overlay", "panel"} & set(kinds)  # a labels-only run skips the pictures
    colours = colorize(labels, palette) if pictured else None
    blended = overlay(panorama.rgb, colours) if pictured - {"color"} else None
    segmentations = [m["segmentation"] for m in result.masks]
    pictures = None
    if segmentations and ("instances" in kinds or "panel" in kinds):
        pictures = instance_map(segmentations, labels.shape)
    files: list[str] = []
    folder.parent.mkdir(parents=True, exist_ok=True)
    with staging_directory(folder.parent, folder.name) as staged:

        def save(kind: str, write: Any) -> None:
            write(staged / FILE_NAMES[kind])
            files.append(FILE_NAMES[kind])

        if "labels" in kinds:
            save("labels", lambda path: save_image(_palette_png(labels, palette), path))
        if "color" in kinds:
            save("color", lambda path: save_image(Image.fromarray(colours), path))
        if "overlay" in kinds:
            save("overlay", lambda path: save_image(Image.fromarray(blended), path))
        if "instances" in kinds and pictures is not None:
            save("instances", lambda path: save_image(Image.fromarray(pictures), path))
        if "panel" in kinds:
            picture = panel(
                panorama.rgb,
                colours,
                blended,
                legend(class_names, palette, fractions, panorama.rgb.shape[1]),
                depth=_model_view(panorama, "depth"),
                normals=_model_view(panorama, "normals"),
                instances=pictures,
                instance_count=len(result.masks),
                caption=caption,
            )
            save("panel", lambda path: save_image(Image.fromarray(picture), path))
        if "masks" in kinds:
            save(
                "masks", lambda path: write_json(path, masks_to_coco_rle(result.masks), indent=None)
            )
        if "probs" in kinds and result.probs is not None:
            save("probs", lambda path: np.save(path, result.probs.astype(np.float16)))
        cloud = None
        if "pointcloud" in kinds:
            cloud = panorama_cloud(panorama, result, cloud_stride, cloud_voxel)
            if cloud is not None:  # without depth: the run summary's notes say so
                save(
                    "pointcloud",
                    lambda path: write_ply(
                        path, cloud, [f"panosamic {panorama.name}"], atomic=False
                    ),
                )
                summary = {**summary, "pointcloud_points": len(cloud)}
        summary = {
            **summary,
            "classes": class_shares(labels, class_names),
            "instance_masks": len(result.masks),
            "refined_with_instances": result.refined,
            "size": list(labels.shape),
            "files": sorted(files),
        }
        write_json(staged / SUMMARY_NAME, summary)
        replace_directory(staged, folder)
    if viewer_of is not None:
        # the folder is complete; should its viewer data fail, write_viewer makes it from the
        # files at the end of the run (any older data script is older than the new files)
        masks = segmentations if "masks" in kinds else []
        try:
            write_panorama_data(viewer_of, folder, panorama.rgb, labels, masks, cloud)
        except Exception as err:
            print(
                f"panosamic: viewer data of {folder.name} left to the end: {err}", file=sys.stderr
            )
    return [*sorted(files), SUMMARY_NAME]


def panorama_cloud(
    panorama: PanoramaInputs, result: PanoramaResult, stride: int = 1, voxel: float | None = None
) -> LabelledCloud | None:
    """The labelled cloud of a segmented panorama, None without depth."""
    if panorama.metres is None or panorama.valid is None:
        return None
    instances = instance_index_map([m["segmentation"] for m in result.masks], result.labels.shape)
    cloud = cloud_from_panorama(
        panorama.metres,
        panorama.valid,
        panorama.rgb,
        result.labels,
        instances=instances,
        confidence=result.confidence,
        stride=stride,
    )
    return voxel_downsample(cloud, voxel) if voxel else cloud


def _palette_png(labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """Class indices as a palette PNG: the pixel values are the indices."""
    if len(palette) > 256:
        raise ValueError(f"{len(palette)} classes do not fit an 8-bit palette PNG")
    h, w = labels.shape
    image = Image.frombytes("P", (w, h), np.ascontiguousarray(labels, dtype=np.uint8).tobytes())
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = palette
    image.putpalette(flat.ravel().tolist())
    return image


def _model_view(panorama: PanoramaInputs, modality: str) -> np.ndarray | None:
    """What the model got for ``modality``: (H, W) grey for depth, (H, W, 3) for normals."""
    tensor = panorama.modalities.get(modality)
    if tensor is None:
        return None
    array = tensor.numpy()
    if modality == "depth":
        return array[0]
    return np.clip(np.rint(array.transpose(1, 2, 0)), 0, 255).astype(np.uint8)
