"""Reading panoramas in ``DataLoader`` worker processes while the model runs.

Each item is read, decoded and converted to the model's input in a worker;
an item that cannot be read comes back as its error message, so that one bad
file does not stop a run of hundreds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from .inputs import DepthEncoding, PanoramaInputs, read_panorama, read_prepared_sample
from .sources import PanoramaSource


@dataclass(frozen=True)
class PreparedDepth:
    """How a prepared dataset's depth is read: raw units per metre and its d_t."""

    divisor: float
    d_t: float


@dataclass
class ReadResult:
    """One item: its index in the run, and the panorama or why it could not be read."""

    index: int
    panorama: PanoramaInputs | None = None
    error: str | None = None


class PanoramaReader(Dataset):
    """The panoramas of ``sources`` as the model's input, for the modalities it needs.

    Args:
        sources: what to read.
        needs: the model's modalities; an item without one of them is an error.
        depth: the depth encoding of loose panoramas.
        prepared: per prepared dataset folder, its depth units and d_t.
        normals_from_depth: compute the normals image from depth where none is given.
    """

    def __init__(
        self,
        sources: Sequence[PanoramaSource],
        needs: Sequence[str],
        depth: DepthEncoding,
        prepared: dict[Path, PreparedDepth],
        normals_from_depth: bool = False,
    ) -> None:
        self.sources = list(sources)
        self.needs = tuple(needs)
        self.depth = depth
        self.prepared = prepared
        self.normals_from_depth = normals_from_depth

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> ReadResult:
        source = self.sources[index]
        normals = self.normals_from_depth and "normals" in self.needs
        try:
            if source.dataset_root is not None:
                depth = self.prepared[source.dataset_root]
                panorama = read_prepared_sample(
                    source.image.parent, depth.divisor, depth.d_t, normals_from_depth=normals
                )
                panorama.name = source.name
            else:
                panorama = read_panorama(
                    source.image,
                    name=source.name,
                    depth=source.depth if "depth" in self.needs or normals else None,
                    depth_encoding=self.depth,
                    normals=source.normals,
                    normals_from_depth=normals,
                )
        except (OSError, ValueError) as err:
            return ReadResult(index, error=str(err))
        missing = [m for m in self.needs if m not in panorama.modalities]
        if missing:
            return ReadResult(index, error=f"the model needs {list(self.needs)}; missing {missing}")
        panorama.modalities = {m: panorama.modalities[m] for m in self.needs}
        return ReadResult(index, panorama)


def read_in_workers(reader: PanoramaReader, batch_size: int, workers: int) -> DataLoader:
    """Batches (lists) of :class:`ReadResult`, read ``workers`` processes ahead of the model."""
    return DataLoader(
        reader,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=list,
        persistent_workers=False,
    )
