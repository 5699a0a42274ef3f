"""Data loading for training and evaluation: the resumable sampler, seeded samples, loaders,
batches to a device."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..utils.distributed import DistContext


def epoch_permutation(num_samples: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The sample order of one epoch, identical on every process (DistributedSampler's rule)."""
    if not shuffle:
        return list(range(num_samples))
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(num_samples, generator=generator).tolist()


def shard_indices(order: Sequence[int], rank: int, world_size: int, drop_uneven: bool) -> list[int]:
    """This rank's share: ``order[rank::world]``, first cut to a multiple of the world if asked."""
    if drop_uneven:
        order = order[: len(order) // world_size * world_size]
    return list(order[rank::world_size])


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` pairs for one process; resumable mid-epoch.

    Training: shuffled per epoch with ``seed + epoch`` (like
    ``DistributedSampler``), cut to a multiple of the world size, split
    ``rank::world``, incomplete last batch dropped. Evaluation: in order,
    nothing dropped (processes may then get one sample more or less).

    The epoch travels with every index so that :class:`SeededSamples` can
    derive each sample's augmentation seed from (seed, epoch, index) alone:
    the data a step sees does not depend on workers or on a resume.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        ctx: DistContext,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank, self.world = ctx.rank, ctx.world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch and skip its first ``start_batch`` batches (a resume)."""
        self.epoch, self.start_batch = epoch, start_batch

    def rank_indices(self) -> list[int]:
        order = epoch_permutation(self.num_samples, self.seed, self.epoch, self.shuffle)
        return shard_indices(order, self.rank, self.world, drop_uneven=self.drop_last)

    def batches_per_epoch(self) -> int:
        n = len(self.rank_indices()) if not self.drop_last else self.num_samples // self.world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices = self.rank_indices()
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = indices[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk]


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


def collate_panoramas(
    batch: Sequence[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """DataLoader collate: a list of data dicts (the model's input) and a list of label dicts,
    nothing stacked (the model stacks)."""
    return [data for data, _ in batch], [labels for _, labels in batch]


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
        collate_fn=_Collate(collate or collate_panoramas),
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
