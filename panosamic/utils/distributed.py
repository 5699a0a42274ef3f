"""torchrun / DistributedDataParallel plumbing shared by training and evaluation.

A process started by ``torchrun`` sees ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` then joins the
process group (NCCL on CUDA, gloo on CPU) and picks ``cuda:LOCAL_RANK``. A plain
``python`` / ``panosamic`` start is a world of one and needs no process group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str | None, local_rank: int = 0) -> torch.device:
    """``None``/"auto": cuda:LOCAL_RANK when CUDA is there, else CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str | None = None, backend: str | None = None) -> DistContext:
    """Join the process group when started by torchrun; otherwise a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        chosen = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(chosen, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def _comm_device(ctx: DistContext) -> torch.device:
    # NCCL only moves CUDA tensors; gloo works on CPU ones.
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """SUM over all processes (returned on the tensor's original device)."""
    if not ctx.distributed:
        return tensor
    work = tensor.detach().to(_comm_device(ctx)).clone()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def all_gather_objects(obj: T, ctx: DistContext) -> list[T]:
    """Every process's ``obj``, in rank order (a list of one when not distributed)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T, ctx: DistContext) -> T:
    """Rank 0's ``obj`` on every process."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
