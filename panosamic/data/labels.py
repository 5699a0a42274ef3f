"""Decoding each dataset's label images into class indices 0..K-1, with -1 = ignore."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .catalog import (
    MPCAT40_TO_CLASS,
    STANFORD_CLASSES,
    TOF360_CLASS_IDS,
    TOF360_IGNORE_IDS,
    TOF360_OTHER_CLASS,
)
from .files import read_json

IGNORE_INDEX = -1
STANFORD_ASSET_FILES = ("semantic_labels.json", "name2label.json", "colors.npy")


def check_stanford_assets(assets_dir: Path) -> None:
    """Raise FileNotFoundError naming what is missing from Stanford2D3DS's ``assets/``."""
    missing = [name for name in STANFORD_ASSET_FILES if not (assets_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Stanford2D3DS label files missing from {assets_dir}: {', '.join(missing)}. "
            "They come with the dataset (the assets/ folder next to area_1 ... area_6: "
            "semantic_labels.json, name2label.json, colors.npy); the semantic images cannot "
            "be decoded without them"
        )


def stanford_instance_lookup(assets_dir: str | Path) -> np.ndarray:
    """Instance index -> Stanford class label (0 = <UNK>, 1..13 = the classes): uint8 (N + 1,).

    Entry i is the class of ``semantic_labels.json[i]`` (the text before its first
    ``_``) mapped through ``name2label.json``; one extra ``<UNK>`` closes the table.
    """
    assets_dir = Path(assets_dir)
    check_stanford_assets(assets_dir)
    labels = read_json(assets_dir / "semantic_labels.json")
    name2label = read_json(assets_dir / "name2label.json")
    if not isinstance(labels, list) or not isinstance(name2label, dict):
        raise ValueError(
            f"{assets_dir}: semantic_labels.json must be a list of names and "
            "name2label.json an object name -> label"
        )
    names = [str(entry).split("_")[0] for entry in labels] + ["<UNK>"]
    unknown = sorted({n for n in names if n not in name2label})
    if unknown:
        raise ValueError(f"{assets_dir}/name2label.json has no label for {unknown}")
    lookup = np.array([name2label[n] for n in names], dtype=np.int64)
    if lookup.min() < 0 or lookup.max() > len(STANFORD_CLASSES):
        raise ValueError(
            f"{assets_dir}/name2label.json: labels must be 0 (<UNK>) .. {len(STANFORD_CLASSES)}"
        )
    return lookup.astype(np.uint8)


def decode_stanford(rgb: np.ndarray, lookup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stanford semantic RGB (H, W, 3) -> (class (H, W) int64, instance (H, W) int64).

    Instance index = G * 256 + B; pixels with R != 0 (including the dataset's
    "missing" colour #0D0D0D) become instance 0 (<UNK>). Class = lookup - 1, so
    <UNK> becomes -1 (ignore); instances also get 1 subtracted.
    """
    rgb = rgb.astype(np.int64)
    index = rgb[..., 1] * 256 + rgb[..., 2]
    index[rgb[..., 0] != 0] = 0
    if index.max() >= len(lookup):
        raise ValueError(
            f"semantic image holds instance index {int(index.max())}, but semantic_labels.json "
            f"has only {len(lookup) - 1} entries; is assets/ from the same dataset?"
        )
    return lookup[index].astype(np.int64) - 1, index - 1


def decode_matterport(raw: np.ndarray) -> np.ndarray:
    """mpcat40 ids (0..41) -> the 20 classes (0..19); 0 void and 41 unlabeled -> -1."""
    if raw.min() < 0 or raw.max() > 41:
        raise ValueError(
            f"Matterport3D semantics must hold mpcat40 ids 0..41, found {int(raw.min())}..{int(raw.max())}"
        )
    return MPCAT40_TO_CLASS[raw]


def decode_structured3d(raw: np.ndarray, num_classes: int = 40) -> np.ndarray:
    """NYU40 ids (0..40) -> 0..39; 0 -> -1 (ignore)."""
    if raw.min() < 0 or raw.max() > num_classes:
        raise ValueError(
            f"Structured3D semantics must hold NYU40 ids 0..{num_classes}, found "
            f"{int(raw.min())}..{int(raw.max())}"
        )
    return raw.astype(np.int64) - 1


def tof360_lookup(max_id: int) -> np.ndarray:
    """ToF-360 id -> Stanford2D3DS class index for ids 0..max_id: int64 (max_id + 1,).

    Ids of :data:`~panosamic.data.catalog.TOF360_IGNORE_IDS` give -1, those of
    :data:`~panosamic.data.catalog.TOF360_CLASS_IDS` their class, any other id clutter.
    """
    listed = [i for ids in TOF360_CLASS_IDS.values() for i in ids] + list(TOF360_IGNORE_IDS)
    table = np.full(max(max_id, *listed) + 1, STANFORD_CLASSES.index(TOF360_OTHER_CLASS))
    for name, ids in TOF360_CLASS_IDS.items():
        table[list(ids)] = STANFORD_CLASSES.index(name)
    table[list(TOF360_IGNORE_IDS)] = IGNORE_INDEX
    return table.astype(np.int64)


def decode_tof360(raw: np.ndarray) -> np.ndarray:
    """ToF-360 category ids (H, W) -> Stanford2D3DS's 13 classes (H, W) int64, -1 = ignore."""
    raw = np.asarray(raw, dtype=np.int64)
    if raw.size and raw.min() < 0:
        raise ValueError(f"ToF-360 semantics must hold category ids >= 0, found {int(raw.min())}")
    return tof360_lookup(int(raw.max()) if raw.size else 0)[raw]
