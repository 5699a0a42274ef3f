"""Running per-sample work over CPU cores with a progress bar."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

T = TypeVar("T")


def default_workers() -> int:
    """The number of CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_map(
    fn: Callable[[T], Any],
    items: Sequence[T],
    *,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "",
    catch: tuple[type[BaseException], ...] = (OSError, ValueError),
) -> Iterator[tuple[T, Any, BaseException | None]]:
    """Yield ``(item, fn(item), None)`` in input order, or ``(item, None, error)`` for caught errors.

    ``fn`` must be a picklable top-level function. One worker (or one item) runs
    in this process; more use fresh ("spawn") processes, so nothing inherited
    from the parent (threads, open files) can deadlock them. Errors outside
    ``catch`` stop the run and propagate; Ctrl-C cancels the pending items.
    """
    from tqdm.auto import tqdm

    workers = min(workers or default_workers(), max(len(items), 1))
    with tqdm(total=len(items), desc=desc, unit="pano", disable=not progress) as bar:
        if workers <= 1:
            for item in items:
                try:
                    result = fn(item)
                except catch as err:
                    yield item, None, err
                else:
                    yield item, result, None
                bar.update()
            return
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        try:
            futures = [(item, pool.submit(fn, item)) for item in items]
            for item, future in futures:
                try:
                    result = future.result()
                except catch as err:
                    yield item, None, err
                else:
                    yield item, result, None
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
