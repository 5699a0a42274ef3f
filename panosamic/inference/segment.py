"""Segmenting a panorama with a loaded model: class labels and instance masks as arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.catalog import DATASET_CLASS_NAMES
from ..hub.catalog import parse_variant_name
from ..model import PanoSAMic
from .inputs import PanoramaInputs


@dataclass
class Segmentation:
    """``labels``: (H, W) int64 classes; ``masks``: SAM's instance masks, bool (H, W) each,
    largest first; ``refined``: the labels are the majority vote inside the masks."""

    labels: np.ndarray
    masks: list[np.ndarray] = field(default_factory=list)
    refined: bool = False


def segment_panorama(
    model: PanoSAMic,
    panorama: PanoramaInputs,
    *,
    instances: bool = True,
    refine: bool = True,
    progress: bool = False,
) -> Segmentation:
    """Run ``model`` on one panorama; ``refine`` relabels every instance mask by majority."""
    needed = model.config.modalities
    missing = [m for m in needed if m not in panorama.modalities]
    if missing:
        flag = "--normals or --normals-from-depth" if missing[0] == "normals" else f"--{missing[0]}"
        raise ValueError(f"this checkpoint needs {list(needed)}; missing {missing}: pass {flag}")
    batch = [{m: panorama.modalities[m] for m in needed}]
    refine = instances and refine
    with torch.inference_mode():
        (output,) = model(batch, semantic_only=not instances, refine=refine, progress=progress)
    logits = output["refined_sem_preds"] if refine else output["sem_preds"]
    labels = logits.argmax(0).cpu().numpy().astype(np.int64)
    masks = [m["segmentation"].cpu().numpy() for m in output["instance_masks"]]
    return Segmentation(labels, masks, refine)


def class_names_for(dataset: str | None, variant: str | None, num_classes: int) -> list[str]:
    """The class names of ``dataset`` (default: the one the variant name says), else ``class k``."""
    dataset = dataset or parse_variant_name(variant).dataset
    names = DATASET_CLASS_NAMES.get(dataset) if dataset else None
    if names is not None and len(names) != num_classes:
        raise ValueError(f"{dataset} has {len(names)} classes but the model predicts {num_classes}")
    return list(names) if names else [f"class {k}" for k in range(num_classes)]
