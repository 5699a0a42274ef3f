"""The cloud of one segmented panorama, or of one prepared dataset sample with its ground truth.

- :func:`cloud_of_output`: a ``panosamic segment`` panorama folder: the predicted
  classes (``labels.png``), instances (``masks.json``), confidences (``probs.npy``)
  on the depth of the inputs its ``summary.json`` names;
- :func:`cloud_of_sample`: a prepared dataset sample with its ground-truth classes
  (and, for Stanford2D3DS, its ground-truth instances), confidence 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .points import LabelledCloud, cloud_from_panorama, instance_index_map

if TYPE_CHECKING:
    from ..data.datasets import PanoramaDataset


class NoDepth(ValueError):
    """A panorama without depth has no point cloud (reported, not an error for a run)."""


def cloud_of_output(folder: Path, *, stride: int = 1) -> LabelledCloud:
    """The labelled cloud of a segmented panorama's output folder."""
    from PIL import Image

    from ..data.files import read_rgb

    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a panorama folder of `panosamic segment` (no summary.json)"
        )
    summary = json.loads(summary_path.read_text())
    if "labels.png" not in summary.get("files", []):
        raise ValueError(f"{folder} has no labels.png: segment it with --save labels (the default)")
    metres, valid = _depth_of(summary)
    labels = np.asarray(Image.open(folder / "labels.png")).astype(np.int64)
    rgb = read_rgb(summary["input"]["image"])
    masks = []
    if (folder / "masks.json").is_file():
        from pycocotools import mask as mask_utils

        masks = [
            mask_utils.decode(r["segmentation"]).astype(bool)
            for r in json.loads((folder / "masks.json").read_text())
        ]
    confidence = None
    if (folder / "probs.npy").is_file():
        confidence = np.load(folder / "probs.npy").astype(np.float32).max(axis=0)
    return cloud_from_panorama(
        metres,
        valid,
        rgb,
        labels,
        instances=instance_index_map(masks, labels.shape),
        confidence=confidence,
        stride=stride,
    )


def _depth_of(summary: dict) -> tuple[np.ndarray, np.ndarray]:
    """Depth (metres) and validity of a segmented panorama's inputs, as the run read them."""
    from ..data.catalog import dataset_info
    from ..data.files import read_depth16, read_mask
    from ..data.normals import read_depth_file

    inputs = summary["input"]
    if inputs.get("dataset"):  # a prepared dataset sample
        sample = Path(inputs["image"]).parent
        metres = (
            read_depth16(sample / "depth.png").astype(np.float64)
            / dataset_info(inputs["dataset"]).depth_divisor
        )
        return metres, read_mask(sample / "depth_mask.webp")
    if not inputs.get("depth"):
        raise NoDepth("no depth, so no point cloud")
    depth = summary["settings"]["depth"]
    raw, valid = read_depth_file(inputs["depth"], invalid_value=float(depth["invalid"]))
    return raw / float(depth["scale"]), valid


def cloud_of_sample(data: PanoramaDataset, index: int, *, stride: int = 1) -> LabelledCloud:
    """The cloud of sample ``index`` of a prepared dataset (``split="all"``) with its ground truth."""
    from ..data.files import read_depth16, read_mask, read_rgb

    folder = data.root / data.sample_name(index)
    labels, instances = data.ground_truth(index)
    metres = read_depth16(folder / "depth.png").astype(np.float64) / data.info.depth_divisor
    return cloud_from_panorama(
        metres,
        read_mask(folder / "depth_mask.webp"),
        read_rgb(folder / "rgb.webp"),
        labels,
        instances=instances,
        confidence=np.ones(labels.shape, dtype=np.float32),
        stride=stride,
    )
