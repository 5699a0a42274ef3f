"""PyTorch datasets over prepared Stanford2D3DS, Matterport3D, Structured3D and ToF-360 folders.

Each item is ``(data, labels)``:

- ``data["image"]``: float32 (3, H, W) RGB in [0, 255];
- ``data["depth"]``: float32 (3, H, W), the pseudo-disparity
  ``(1 - min(depth, d_t) / d_t) * 255`` (0 where depth is invalid), replicated;
- ``data["normals"]``: float32 (3, H, W), the normals image as is (0..255);
- ``labels["semantics"]``: int64 (1, H, W) class indices, -1 = ignore;
- ``labels["instances"]``: an empty tensor (the reference never returns instances).

A modality that was not asked for, or normals a dataset does not have, is an
empty tensor. Nothing is resized: prepared data of any 2:1 size works.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

from ..modalities import MODALITIES, normalize_modalities, pseudo_disparity
from .augment import NORMALS_FRAMES, apply_augmentation, draw_augmentation
from .catalog import (
    DATASET_CLASS_NAMES,
    DATASETS,
    DEPTH_INLIER_RATIOS,
    DatasetInfo,
    dataset_info,
)
from .colors import dataset_palette
from .files import (
    read_depth16,
    read_json,
    read_label_image,
    read_mask,
    read_rgb,
    write_dataset_json,
)
from .labels import (
    decode_matterport,
    decode_stanford,
    decode_structured3d,
    decode_tof360,
    stanford_instance_lookup,
)
from .prepare import AREA_STATISTICS_CACHE, SAMPLES_CACHE, THRESHOLDS_CACHE
from .stats import depth_thresholds, sum_area_histograms

__all__ = [
    "DATASETS",
    "DATASET_CLASS_NAMES",
    "PanoramaDataset",
    "build_dataset",
    "resolve_dataset_name",
]

CLASS_WEIGHTS_CACHE = "cache_class_weights.json"


def resolve_dataset_name(name: str) -> str:
    """Canonical dataset name; like the reference, any name containing "matterport3d" is Matterport3D."""
    if name in DATASETS:
        return name
    if "matterport3d" in name:
        return "matterport3d"
    raise ValueError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")


class PanoramaDataset(Dataset):
    """One split of one fold of a prepared dataset (see the module docstring for the items).

    Args:
        name: "stanford2d3ds", "matterport3d", "structured3d" or "tof360".
        root: the prepared dataset folder (``panosamic prepare``'s OUT_DIR).
        fold: Stanford 1..3; Matterport3D and Structured3D 1 (validation scenes) or 2 (test
            scenes); ToF-360 1 (every scene, in both splits: it is for evaluation).
        split: "train", "eval" (the fold's held-out split) or "all" (every prepared sample;
            d_t still comes from the fold's training split).
        modalities: which of image, depth, normals to load (image is required).
        augment: flip / roll / permute with p = 0.25 each; None: on for "train" only.
        depth_inlier_ratio: picks d_t, one of 0.9, 0.95, 0.99, 0.995, 0.999, 1.
        mask_black: black RGB pixels -> ignore. None: the reference's rule (Stanford: only
            with a single modality; the other datasets: always).
        mirror_normals: also transform the normal vectors under flip/roll
            (see :mod:`panosamic.data.augment`); the reference does not.
        normals_frame: "world" or "camera"; None: the dataset's (Matterport3D: camera).
        depth_threshold: d_t in metres, overriding the cached training-split statistics.
        seed: seed of this dataset's own augmentation generator (None: torch's global RNG,
            which DataLoader seeds per worker). DataLoader worker k draws from
            ``seed * 1000003 + k + 1``, the main process from ``seed``.
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        *,
        fold: int = 1,
        split: str = "train",
        modalities: Sequence[str] | str = MODALITIES,
        augment: bool | None = None,
        depth_inlier_ratio: float = 0.995,
        mask_black: bool | None = None,
        mirror_normals: bool = False,
        normals_frame: str | None = None,
        depth_threshold: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.info: DatasetInfo = dataset_info(resolve_dataset_name(name))
        self.name = self.info.name
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"prepared dataset folder {self.root} does not exist; run `panosamic prepare` first"
            )
        self.fold = fold
        self.split = split
        if split == "train" and self.info.evaluation_only:
            warnings.warn(
                f"{self.name} is for evaluation: its one fold holds every scene in both splits, "
                "so training on it also validates on the training panoramas",
                stacklevel=2,
            )
        self.locations = (
            self._prepared_locations() if split == "all" else self.info.split_locations(fold, split)
        )
        self.modalities = normalize_modalities(modalities)
        if depth_inlier_ratio not in DEPTH_INLIER_RATIOS:
            raise ValueError(
                f"depth_inlier_ratio must be one of {DEPTH_INLIER_RATIOS}, got {depth_inlier_ratio}"
            )
        self.depth_inlier_ratio = float(depth_inlier_ratio)
        self.augment = (split == "train") if augment is None else bool(augment)
        if mask_black is None:
            mask_black = self.info.mask_black_always or len(self.modalities) == 1
        self.mask_black = bool(mask_black)
        self.mirror_normals = bool(mirror_normals)
        self.normals_frame = normals_frame or self.info.normals_frame
        if self.normals_frame not in NORMALS_FRAMES:
            raise ValueError(
                f"normals_frame must be one of {NORMALS_FRAMES}, got {normals_frame!r}"
            )
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_worker: int | None = None

        self.class_names: tuple[str, ...] = self.info.class_names
        self.num_classes: int = len(self.class_names)
        self.palette: np.ndarray = dataset_palette(self.name)
        self._depth_threshold = None if depth_threshold is None else float(depth_threshold)
        if self._depth_threshold is not None and self._depth_threshold <= 0:
            raise ValueError(f"depth_threshold must be positive, got {depth_threshold}")
        self.samples: list[tuple[str, str]] = self._list_samples()
        if "depth" in self.modalities:
            _ = self.depth_threshold  # fail early when the statistics are missing
        self._lookup = (
            stanford_instance_lookup(self.root / "assets") if self.name == "stanford2d3ds" else None
        )
        if "normals" in self.modalities:
            self._check_normals()

    # ------------------------------------------------------------------ samples

    def _prepared_locations(self) -> tuple[str, ...]:
        """Every area or scene of the prepared folder (split "all")."""
        cache_path = self.root / SAMPLES_CACHE
        if cache_path.is_file():
            return tuple(sorted(read_json(cache_path)))
        return tuple(
            sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        )

    def _list_samples(self) -> list[tuple[str, str]]:
        cache_path = self.root / SAMPLES_CACHE
        cache = read_json(cache_path) if cache_path.is_file() else {}
        samples, missing = [], []
        for location in self.locations:
            folder = self.root / location
            if not folder.is_dir():
                continue
            if location in cache:
                names = [str(n) for n in cache[location]]
                missing += [f"{location}/{n}" for n in names if not (folder / n).is_dir()]
            else:
                names = sorted(
                    p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                )
            samples += [(location, n) for n in names]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} samples listed in {cache_path} are not prepared (e.g. {missing[0]}); "
                "finish `panosamic prepare` (it resumes where it stopped)"
            )
        if not samples:
            raise FileNotFoundError(
                f"no {self.name} samples for fold {self.fold} split {self.split!r} in {self.root}; "
                f"expected prepared folders among: {', '.join(self.locations[:8])}"
                + (" ..." if len(self.locations) > 8 else "")
            )
        return samples

    def _check_normals(self) -> None:
        location, sample = self.samples[0]
        if (self.root / location / sample / "normals.webp").is_file():
            return
        if self.info.normals_required:
            raise FileNotFoundError(f"{self.root / location / sample}/normals.webp is missing")
        warnings.warn(
            f"{self.name} samples have no normals.webp, so 'normals' will be empty tensors; "
            "compute them from depth with `panosamic normals`",
            stacklevel=3,
        )

    def __len__(self) -> int:
        return len(self.samples)

    def sample_name(self, i: int) -> str:
        """``"<area or scene>/<sample>"`` of item ``i``."""
        location, sample = self.samples[i]
        return f"{location}/{sample}"

    # ------------------------------------------------------------------ depth threshold

    @property
    def depth_threshold(self) -> float:
        """d_t in metres: the training split's depth quantile at ``depth_inlier_ratio``."""
        if self._depth_threshold is None:
            values = self._cached_thresholds()
            self._depth_threshold = values[DEPTH_INLIER_RATIOS.index(self.depth_inlier_ratio)]
            if self._depth_threshold <= 0:
                raise ValueError(
                    f"d_t is {self._depth_threshold} m for ratio {self.depth_inlier_ratio}: "
                    "almost all training depths fall in the first histogram bin"
                )
        return self._depth_threshold

    def _cached_thresholds(self) -> list[float]:
        """The six thresholds of this fold from the cache, computed and cached on a miss.

        Unlike the reference (which raises in evaluation mode), a miss is computed from
        the training split's histograms in either split: the result is the same.
        """
        path = self.root / THRESHOLDS_CACHE
        cache = read_json(path) if path.is_file() else None
        key = str(self.fold)
        if self.info.cross_validation:
            values = cache.get(key) if isinstance(cache, dict) else None
        else:
            values = cache if isinstance(cache, list) else None
        if values is not None and len(values) == len(DEPTH_INLIER_RATIOS):
            return [float(v) for v in values]
        values = self._compute_thresholds()
        if self.info.cross_validation:
            merged = dict(cache) if isinstance(cache, dict) else {}
            merged[key] = values
            write_dataset_json(path, merged)
        else:
            write_dataset_json(path, values)
        return values

    def _compute_thresholds(self) -> list[float]:
        stats_path = self.root / AREA_STATISTICS_CACHE
        if not stats_path.is_file():
            raise FileNotFoundError(
                f"{stats_path} is missing: it is written at the end of `panosamic prepare`"
            )
        train = self.info.split_locations(self.fold, "train")
        present = [a for a in train if (self.root / a).is_dir() and any((self.root / a).iterdir())]
        if not present:
            raise FileNotFoundError(
                f"d_t comes from the training split of fold {self.fold}, but none of its areas "
                f"is in {self.root}; prepare them or pass depth_threshold="
            )
        counts, edges = sum_area_histograms(read_json(stats_path), present)
        return depth_thresholds(counts, edges)

    # ------------------------------------------------------------------ items

    def _semantics(self, folder: Path) -> np.ndarray:
        return self._labels(folder)[0]

    def ground_truth(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Item ``i``'s (H, W) classes (-1 = ignore) and, for Stanford2D3DS, its instance
        indices (-1 = none; the other datasets: None), without augmentation or masking."""
        location, sample = self.samples[i]
        return self._labels(self.root / location / sample)

    def _labels(self, folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
        if self.name == "stanford2d3ds":
            classes, instances = decode_stanford(read_rgb(folder / "instances.webp"), self._lookup)
            return classes, np.where(classes >= 0, instances, -1)
        raw = read_label_image(folder / "semantics.png")
        if self.name == "matterport3d":
            return decode_matterport(raw), None
        if self.name == "tof360":
            return decode_tof360(raw), None
        return decode_structured3d(raw, self.num_classes), None

    def _pseudo_disparity(self, folder: Path) -> np.ndarray:
        """(H, W) float32 in [0, 255]: 255 at distance 0, 0 at or beyond d_t and where invalid."""
        metres = self.info.depth_metres(read_depth16(folder / "depth.png"))
        return pseudo_disparity(metres, read_mask(folder / "depth_mask.webp"), self.depth_threshold)

    def load(self, i: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Item ``i`` without augmentation."""
        location, sample = self.samples[i]
        folder = self.root / location / sample
        arrays: dict[str, np.ndarray] = {}
        rgb = (
            read_rgb(folder / "rgb.webp")
            if ("image" in self.modalities or self.mask_black)
            else None
        )
        if "image" in self.modalities:
            arrays["image"] = rgb
        if "depth" in self.modalities:
            arrays["depth"] = np.repeat(self._pseudo_disparity(folder)[..., None], 3, axis=-1)
        if "normals" in self.modalities and (folder / "normals.webp").is_file():
            arrays["normals"] = read_rgb(folder / "normals.webp")
        semantics = self._semantics(folder)
        sizes = {k: a.shape[:2] for k, a in arrays.items()} | {"semantics": semantics.shape}
        if rgb is not None:
            sizes["rgb"] = rgb.shape[:2]
        if len(set(sizes.values())) != 1:
            raise ValueError(f"{folder}: files differ in size {sizes}")
        if self.mask_black:
            semantics = np.where(rgb.sum(axis=-1) == 0, -1, semantics)
        data = {
            m: torch.from_numpy(
                np.ascontiguousarray(arrays[m].transpose(2, 0, 1), dtype=np.float32)
            )
            if m in arrays
            else torch.empty(0)
            for m in MODALITIES
        }
        labels = {
            "semantics": torch.from_numpy(semantics.astype(np.int64))[None],
            "instances": torch.empty(0),
        }
        return data, labels

    def _augmentation_generator(self) -> torch.Generator | None:
        """This process's generator (one stream per DataLoader worker), or None for the global RNG."""
        if self.seed is None:
            return None
        worker = get_worker_info()
        worker_id = None if worker is None else worker.id
        if self._generator is None or self._generator_worker != worker_id:
            seed = self.seed if worker_id is None else self.seed * 1000003 + worker_id + 1
            self._generator = torch.Generator().manual_seed(seed % 2**63)
            self._generator_worker = worker_id
        return self._generator

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_generator"] = None  # generators do not travel to worker processes
        return state

    def __getitem__(self, i: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        data, labels = self.load(i)
        if self.augment:
            width = labels["semantics"].shape[-1]
            aug = draw_augmentation(width, self._augmentation_generator())
            data, labels = apply_augmentation(
                data,
                labels,
                aug,
                mirror_normals=self.mirror_normals,
                normals_frame=self.normals_frame,
            )
        return data, labels

    # ------------------------------------------------------------------ class weights

    def class_weights(self, progress: bool = True) -> Tensor:
        """(K,) float32: w_c = (sum_k n_k) / n_c over this split's labelled pixels (inf if n_c = 0).

        ``mask_black`` applies as configured. The training split's weights are cached
        in ``cache_class_weights.json`` (Stanford: per fold), like the reference,
        whose cache key is only the fold: the first run decides for later ones.
        """
        path = self.root / CLASS_WEIGHTS_CACHE
        cache = read_json(path) if path.is_file() else None
        key = str(self.fold)
        if self.split == "train":
            cached = (
                cache.get(key) if self.info.cross_validation and isinstance(cache, dict) else cache
            )
            if isinstance(cached, list) and len(cached) == self.num_classes:
                return torch.tensor(cached, dtype=torch.float32)
        weights = self._count_weights(progress)
        if self.split == "train":
            values = [float(w) for w in weights]
            if self.info.cross_validation:
                merged = dict(cache) if isinstance(cache, dict) else {}
                merged[key] = values
                write_dataset_json(path, merged)
            else:
                write_dataset_json(path, values)
        return torch.from_numpy(weights)

    def _count_weights(self, progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        counts = np.zeros(self.num_classes, dtype=np.int64)
        for location, sample in tqdm(
            self.samples, desc="class weights", unit="pano", disable=not progress
        ):
            folder = self.root / location / sample
            semantics = self._semantics(folder)
            if self.mask_black:
                semantics = np.where(read_rgb(folder / "rgb.webp").sum(axis=-1) == 0, -1, semantics)
            valid = semantics[semantics >= 0]
            counts += np.bincount(valid, minlength=self.num_classes)[: self.num_classes]
        with np.errstate(divide="ignore"):
            return (counts.sum() / counts.astype(np.float64)).astype(np.float32)


def build_dataset(
    name: str,
    root: str | Path,
    *,
    fold: int = 1,
    split: str = "train",
    modalities: Sequence[str] | str = MODALITIES,
    augment: bool | None = None,
    depth_inlier_ratio: float = 0.995,
    mask_black: bool | None = None,
    mirror_normals: bool = False,
    **options,
) -> PanoramaDataset:
    """A :class:`PanoramaDataset` (the reference's builder; extra options pass through)."""
    return PanoramaDataset(
        name,
        root,
        fold=fold,
        split=split,
        modalities=modalities,
        augment=augment,
        depth_inlier_ratio=depth_inlier_ratio,
        mask_black=mask_black,
        mirror_normals=mirror_normals,
        **options,
    )
