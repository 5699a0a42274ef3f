"""Buffers reused across calls, so that large temporaries do not cost fresh memory each time.

A fresh multi-megabyte tensor comes from the kernel as untouched pages, and the
first write to each page faults; for the instance path's 4-16 MiB temporaries
those faults cost more than the arithmetic on them. The C allocator may also
give such memory back after every free, so the cost recurs on every call.
"""

from __future__ import annotations

import math

from torch import Tensor


class Workspace:
    """Named buffers: ``get(name, shape)`` returns an uninitialised tensor of that
    shape, backed by one allocation per name that only grows (same dtype and device
    as ``like``). A buffer is valid until the next ``get`` of the same name."""

    def __init__(self, like: Tensor) -> None:
        self._like = like
        self._store: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> Tensor:
        numel = math.prod(shape)
        buf = self._store.get(name)
        if buf is None or buf.numel() < numel:
            buf = self._like.new_empty(numel)
            self._store[name] = buf
        return buf[:numel].view(shape)
