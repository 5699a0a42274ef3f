"""Optional wall-clock timing of the model's stages (used by ``panosamic bench``)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StageTimer:
    """Collects seconds per named stage; synchronises the accelerator around each stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def stage(self, name: str, device: torch.device) -> Iterator[None]:
        _synchronize(device)
        start = time.perf_counter()
        try:
            yield
        finally:
            _synchronize(device)
            self.seconds[name].append(time.perf_counter() - start)

    def reset(self) -> None:
        self.seconds.clear()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
