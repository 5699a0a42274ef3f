"""Data loading for training and evaluation: seeded samples, loaders, batches to a device."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .distributed import DistContext, ResumableBatchSampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends on (run seed, epoch, sample index) only."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global RNGs; restore them afterwards."""
    py_state, np_state, torch_state = (
        random.getstate(),
        np.random.get_state(),
        torch.get_rng_state(),
    )
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class SeededSamples(Dataset):
    """Wraps a dataset so that ``ds[(epoch, i)]`` draws its augmentation from a fixed seed.

    The random augmentations (flip, roll, channel permutation) then depend on
    (seed, epoch, i) only, not on the worker that loads the sample nor on where
    a resumed run picked up, which is what makes a resume bit-exact.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, Any, int]:
        epoch, index = key
        with seeded_global_rngs(sample_seed(self.seed, epoch, index)):
            data, labels = self.dataset[index]
        return data, labels, index


def collate_with_indices(
    batch: list[tuple[Any, Any, int]], collate: Callable[[list[Any]], tuple[list, list]]
) -> tuple[list[dict], list[dict], list[int]]:
    """The dataset's collate on (data, labels) plus the list of sample indices."""
    data, labels = collate([(d, lab) for d, lab, _ in batch])
    return data, labels, [i for _, _, i in batch]


class _Collate:
    """Picklable collate wrapper (worker processes need to pickle it)."""

    def __init__(self, collate: Callable[[list[Any]], tuple[list, list]]) -> None:
        self.collate = collate

    def __call__(self, batch: list[tuple[Any, Any, int]]) -> tuple[list, list, list[int]]:
        return collate_with_indices(batch, self.collate)


def default_collate_panoramas(batch: list[tuple[dict, dict]]) -> tuple[list[dict], list[dict]]:
    """Lists of data dicts and label dicts, no stacking (the model stacks)."""
    return [d for d, _ in batch], [lab for _, lab in batch]


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    ctx: DistContext,
    train: bool,
    seed: int,
    num_workers: int,
    collate: Callable[[list[Any]], tuple[list, list]] | None = None,
) -> tuple[DataLoader, ResumableBatchSampler]:
    """A loader over ``(epoch, index)`` batches and its resumable batch sampler."""
    sampler = ResumableBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        batch_size,
        ctx=ctx,
        shuffle=train,
        seed=seed,
        drop_last=train,
    )
    loader = DataLoader(
        SeededSamples(dataset, seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_Collate(collate or default_collate_panoramas),
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=False,
    )
    return loader, sampler


def to_device(
    data: list[dict[str, torch.Tensor]], modalities: tuple[str, ...], device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Keep the model's modalities and move them to ``device``."""
    moved = []
    for i, sample in enumerate(data):
        missing = [m for m in modalities if m not in sample or sample[m].numel() == 0]
        if missing:
            raise ValueError(
                f"sample {i} of the batch lacks the modalities {missing} the model needs "
                f"({list(modalities)}); does the dataset provide them?"
            )
        moved.append({m: sample[m].to(device, non_blocking=True) for m in modalities})
    return moved
