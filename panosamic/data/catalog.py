"""Facts about the datasets: areas/scenes, folds, classes, depth units, label encodings.

Three datasets train and evaluate (Stanford2D3DS, Matterport3D, Structured3D);
ToF-360 evaluates Stanford2D3DS models on real captures: its own label ids map
to Stanford2D3DS's 13 classes (:data:`TOF360_CLASS_IDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

DATASETS: tuple[str, ...] = ("stanford2d3ds", "matterport3d", "structured3d", "tof360")

# The ratios for which d_t is cached (cache_splits_depth_statistics.json), in this order.
DEPTH_INLIER_RATIOS: tuple[float, ...] = (0.9, 0.95, 0.99, 0.995, 0.999, 1.0)

STANFORD_AREAS: tuple[str, ...] = (
    "area_1", "area_2", "area_3", "area_4", "area_5a", "area_5b", "area_6",
)  # fmt: skip
STANFORD_CLASSES: tuple[str, ...] = (
    "beam", "board", "bookcase", "ceiling", "chair", "clutter", "column",
    "door", "floor", "sofa", "table", "wall", "window",
)  # fmt: skip

MATTERPORT_TRAIN: tuple[str, ...] = (
    "17DRP5sb8fy", "1LXtFkjw3qL", "1pXnuDYAj8r", "29hnd4uzFmX", "5LpN3gDmAk7", "5q7pvUzZiYa",
    "759xd9YjKW5", "7y3sRwLe3Va", "82sE5b5pLXE", "8WUmhLawc2A", "aayBHfsNo7d", "ac26ZMwG7aT",
    "B6ByNegPMKs", "b8cTxDM8gDG", "cV4RVeZvu5T", "D7N2EKCX4Sj", "e9zR4mvMWw7", "EDJbREhghzL",
    "GdvgFV5R1Z5", "gTV8FGcVJC9", "HxpKQynjfin", "i5noydFURQK", "JeFG25nYj2p", "JF19kD82Mey",
    "jh4fc5c5qoQ", "kEZ7cmS4wCh", "mJXqzFtmKg4", "p5wJjkQkbXX", "Pm6F8kyY3z2", "pRbA3pwrgk9",
    "PuKPg4mmafe", "PX4nDJXEHrG", "qoiz87JEwZ2", "rPc6DW4iMge", "s8pcmisQ38h", "S9hNv5qa7GM",
    "sKLMLpTHeUy", "SN83YJsR3w2", "sT4fr6TAbpF", "ULsKaCPVFJR", "uNb9QFRL6hY", "Uxmj2M2itWa",
    "V2XKFyX4ASd", "VFuaQ6m2Qom", "VVfe2KiqLaN", "Vvot9Ly1tCj", "vyrNrziPKCB", "VzqfbhrpDEA",
    "XcA2TqTSSAj", "2n8kARJN3HM", "D7G3Y4RVNrH", "dhjEzFoUFzH", "E9uDoFAP3SH", "gZ6f7yhEvPG",
    "JmbYfDe2QKZ", "r1Q1Z4BcV1o", "r47D5H71a5s", "ur6pFq6Qu1A", "VLzqgDo317F", "YmJkqBEsHnH",
    "ZMojNkEp431",
)  # fmt: skip
MATTERPORT_VALID: tuple[str, ...] = (
    "2azQ1b91cZZ", "8194nk5LbLH", "EU6Fwq7SyZv", "oLBMNvg9in8", "QUCTc6BB5sX", "TbHJrupSAjP",
    "X7HyMhZNoso",
)  # fmt: skip
MATTERPORT_TEST: tuple[str, ...] = (
    "2t7WUuJeko7", "5ZKStnWn8Zo", "ARNzJeq3xxb", "fzynW3qQPVF", "jtcxE69GiFV", "pa4otMbVnkk",
    "q9vSo1VnCiC", "rqfALeAoiTq", "UwV83HsGsw3", "wc2JMjhGNzB", "WYY7iVyf5p8", "YFuZgdQ5vWj",
    "yqstnuAEVhm", "YVUC4YcDtcY", "gxdoqLR6rwA", "gYvKGZ5eRqb", "RPmz2sHmrrY", "Vt2qJdWjCF2",
)  # fmt: skip
MATTERPORT_CLASSES: tuple[str, ...] = (
    "wall", "floor", "chair", "door", "table", "picture", "furniture", "objects", "window",
    "sofa", "bed", "sink", "stairs", "ceiling", "toilet", "mirror", "shower", "bathtub",
    "counter", "shelving",
)  # fmt: skip
# mpcat40 raw id (0..41) -> final class index; -1 = ignore (0 void, 41 unlabeled).
_MPCAT40_GROUPS: dict[int, tuple[int, ...]] = {
    0: (1,), 1: (2,), 2: (3, 19), 3: (4,), 4: (5,), 5: (6,), 6: (7, 13, 33, 34, 36),
    7: (8, 12, 14, 20, 22, 24, 27, 28, 29, 30, 35, 37, 38, 39, 40), 8: (9, 32), 9: (10,),
    10: (11,), 11: (15,), 12: (16,), 13: (17,), 14: (18,), 15: (21,), 16: (23,), 17: (25,),
    18: (26,), 19: (31,),
}  # fmt: skip
MPCAT40_TO_CLASS = np.full(42, -1, dtype=np.int64)
for _cls, _raw_ids in _MPCAT40_GROUPS.items():
    MPCAT40_TO_CLASS[list(_raw_ids)] = _cls

STRUCTURED3D_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "nightstand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
STRUCTURED3D_TRAIN = tuple(f"scene_{i:05d}" for i in range(3000))
STRUCTURED3D_VALID = tuple(f"scene_{i:05d}" for i in range(3000, 3250))
STRUCTURED3D_TEST = tuple(f"scene_{i:05d}" for i in range(3250, 3500))

# ToF-360 (COLE-Ricoh/ToF-360): 179 real panoramas in four scenes, labelled with the
# dataset's own category ids. Evaluation: all of them, as Stanford2D3DS's 13 classes.
TOF360_SCENES: tuple[str, ...] = ("Hospital", "Office_Room_1", "Office_Room_2", "Parking_Lot")
TOF360_IGNORE_IDS: tuple[int, ...] = (0, 33, 34)  # unlabeled, its variant, invalid
# Stanford class -> the ToF-360 ids it takes (40 curtain wall, 4 couch, 31 shelf);
# every id not listed here or in TOF360_IGNORE_IDS is TOF360_OTHER_CLASS.
TOF360_CLASS_IDS: dict[str, tuple[int, ...]] = {
    "wall": (1, 40), "ceiling": (2, 20, 42), "floor": (3, 18), "sofa": (4,), "chair": (5,),
    "door": (7,), "window": (8,), "table": (12,), "column": (14,), "beam": (17,),
    "board": (26,), "bookcase": (31,),
}  # fmt: skip
TOF360_OTHER_CLASS = "clutter"
TOF360_RAW_WIDTH = 5792  # the raw panoramas: 5792 x 2896


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the preparation and the loaders need to know about one dataset."""

    name: str
    class_names: tuple[str, ...]
    folds: Mapping[int, tuple[tuple[str, ...], tuple[str, ...]]]  # fold -> (train, eval)
    depth_divisor: float  # metres = raw depth / depth_divisor
    depth_invalid: int  # raw value of pixels without depth
    histogram_bins: int  # depth histogram of the preparation: bins over [0, histogram_max]
    histogram_max: float
    cross_validation: bool  # caches keyed by fold (Stanford) or one entry for all folds
    mask_black_always: bool  # Matterport, Structured3D: black RGB is always ignored
    normals_required: bool
    default_scale: float  # the reference preparation's default scale
    normals_frame: str  # "world" or "camera", see panosamic.data.augment
    evaluation_only: bool = False  # too small to train on; its one fold is for evaluation

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def depth_metres(self, raw: np.ndarray) -> np.ndarray:
        """Raw depth units -> metres (float64), as the reference computes them."""
        return np.asarray(raw, dtype=np.float64) / self.depth_divisor

    def split_locations(self, fold: int, split: str) -> tuple[str, ...]:
        """The areas or scenes of a fold's split ("train" or "eval", the held-out split)."""
        if fold not in self.folds:
            raise ValueError(f"{self.name} has folds {sorted(self.folds)}, got fold {fold!r}")
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        train, held_out = self.folds[fold]
        return train if split == "train" else held_out


DATASET_INFO: dict[str, DatasetInfo] = {
    "stanford2d3ds": DatasetInfo(
        name="stanford2d3ds",
        class_names=STANFORD_CLASSES,
        folds={
            1: (("area_1", "area_2", "area_3", "area_4", "area_6"), ("area_5a", "area_5b")),
            2: (("area_1", "area_3", "area_5a", "area_5b", "area_6"), ("area_2", "area_4")),
            3: (("area_2", "area_4", "area_5a", "area_5b"), ("area_1", "area_3", "area_6")),
        },
        # The reference's factor raw * 128 / 65535 (not the dataset's raw / 512), kept so
        # that d_t matches; 65535 / 128 is exact in floating point, so the division rounds alike.
        depth_divisor=65535.0 / 128.0,
        depth_invalid=65535,
        histogram_bins=1280,
        histogram_max=128.0,
        cross_validation=True,
        mask_black_always=False,
        normals_required=True,
        default_scale=1.0,
        normals_frame="world",
    ),
    "matterport3d": DatasetInfo(
        name="matterport3d",
        class_names=MATTERPORT_CLASSES,
        folds={
            1: (MATTERPORT_TRAIN, MATTERPORT_VALID),
            2: (MATTERPORT_TRAIN, MATTERPORT_TEST),
        },
        depth_divisor=4000.0,
        depth_invalid=0,
        histogram_bins=160,
        histogram_max=16.0,
        cross_validation=False,
        mask_black_always=True,
        normals_required=False,
        default_scale=0.25,
        normals_frame="camera",
    ),
    "structured3d": DatasetInfo(
        name="structured3d",
        class_names=STRUCTURED3D_CLASSES,
        folds={
            1: (STRUCTURED3D_TRAIN, STRUCTURED3D_VALID),
            2: (STRUCTURED3D_TRAIN, STRUCTURED3D_TEST),
        },
        depth_divisor=1000.0,
        depth_invalid=0,
        # The reference uses 65535 bins of 1 m over [0, 65535]; raw depth stops at
        # 65.535 m, so 66 bins of 1 m give the same counts, edges and thresholds.
        histogram_bins=66,
        histogram_max=66.0,
        cross_validation=False,
        mask_black_always=True,
        normals_required=True,
        default_scale=1.0,
        normals_frame="world",
    ),
    "tof360": DatasetInfo(
        name="tof360",
        class_names=STANFORD_CLASSES,
        # One fold holding every scene, as the reference's: d_t comes from all of them.
        folds={1: (TOF360_SCENES, TOF360_SCENES)},
        depth_divisor=512.0,
        depth_invalid=0,
        histogram_bins=1280,  # 0.1 m bins over the 16-bit range, 65535 / 512 = 128 m
        histogram_max=128.0,
        cross_validation=False,
        mask_black_always=True,
        normals_required=True,
        default_scale=1024 / TOF360_RAW_WIDTH,  # the reference resizes to width 1024
        normals_frame="camera",  # assumed: normals of a time-of-flight camera's depth
        evaluation_only=True,
    ),
}

DATASET_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    name: info.class_names for name, info in DATASET_INFO.items()
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset name (exact, lower case)."""
    try:
        return DATASET_INFO[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose from {list(DATASETS)}") from None
