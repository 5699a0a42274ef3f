"""Meta's official SAM files: names, checksums, the cache, downloads, checks.

An official file (``sam_vit_{b,l,h}_*.pth``, Apache-2.0) provides the frozen
``image_encoder.*``, ``prompt_encoder.*`` and ``mask_decoder.*`` tensors.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from .files import CheckpointError, check_no_extra, check_tensors, file_md5, read_state_dict
from .huggingface import offline

SAM_URL_ENV = "PANOSAMIC_SAM_URL"  # base URL override (mirrors, tests)
SAM_CACHE_ENV = "PANOSAMIC_SAM_CACHE"  # cache directory override
SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM_FILES: dict[str, str] = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
SAM_MD5: dict[str, str | None] = {
    "sam_vit_b_01ec64.pth": "01ec64d29a2fca3f0661936605ae66f8",
    "sam_vit_l_0b3195.pth": "0b3195507c641ddb6910d2bb5adee89c",
    "sam_vit_h_4b8939.pth": "4b8939a88964f0f4ff5f5b2642c598a6",
}


def sam_cache_dir() -> Path:
    """Where downloaded SAM files live: ``$PANOSAMIC_SAM_CACHE`` or ``~/.cache/panosamic/sam``."""
    return Path(
        os.environ.get(SAM_CACHE_ENV) or Path.home() / ".cache" / "panosamic" / "sam"
    ).expanduser()


def sam_layout(vit_model: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the official SAM file, from segment-anything's own
    model built on the meta device (no memory, no file)."""
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        sam = sam_model_registry[vit_model]()
    return {k: tuple(v.shape) for k, v in sam.state_dict().items()}


def resolve_sam_weights(vit_model: str | None, sam_weights_path: str | Path | None = None) -> Path:
    """The SAM file to use.

    ``sam_weights_path`` may be a file, or a directory holding the official file
    for ``vit_model``. Omitted, the file is taken from the cache, or downloaded
    from Meta's public URL into it.
    """
    if sam_weights_path is not None:
        path = Path(sam_weights_path).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            return _sam_file_in_directory(path, vit_model)
        raise FileNotFoundError(f"sam_weights_path {path} is neither a file nor a directory")
    if vit_model not in SAM_FILES:
        raise ValueError(
            "this model has a custom encoder: pass sam_weights_path= pointing at a SAM-layout .pth file"
        )
    cached = sam_cache_dir() / SAM_FILES[vit_model]
    return cached if cached.is_file() else download_sam_weights(vit_model)


def _sam_file_in_directory(directory: Path, vit_model: str | None) -> Path:
    if vit_model not in SAM_FILES:
        raise ValueError(
            f"cannot pick a SAM file from {directory} for a custom encoder: pass the file itself"
        )
    official = directory / SAM_FILES[vit_model]
    if official.is_file():
        return official
    candidates = sorted(directory.glob(f"sam_{vit_model}_*.pth"))
    if len(candidates) == 1:
        return candidates[0]
    present = sorted(p.name for p in directory.glob("*.pth"))
    raise FileNotFoundError(
        f"no SAM weights for {vit_model} in {directory} (expected {SAM_FILES[vit_model]}; "
        f".pth files there: {present or 'none'}). Download "
        f"{SAM_BASE_URL}{SAM_FILES[vit_model]} into that directory, or omit sam_weights_path "
        f"to download it automatically."
    )


def download_sam_weights(
    vit_model: str, cache_dir: str | Path | None = None, progress: bool = True
) -> Path:
    """Download an official SAM file into the cache; resumable, verified, atomic.

    The bytes go to ``<file>.part`` (resumed with an HTTP range request when a
    partial file exists), are checked (MD5 of the official file, then the
    official tensor names and shapes) and only then renamed into place, so a
    broken download never poisons the cache.
    """
    from filelock import FileLock

    name = SAM_FILES[vit_model]
    directory = Path(cache_dir).expanduser() if cache_dir else sam_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    url = os.environ.get(SAM_URL_ENV, SAM_BASE_URL).rstrip("/") + "/" + name
    manual = (
        f"Download {SAM_BASE_URL}{name} on a machine with internet access and either put it at "
        f"{target} or pass sam_weights_path= (the file or its directory)."
    )
    if offline():
        raise RuntimeError(f"SAM weights {name} are not cached and HF_HUB_OFFLINE is set. {manual}")
    with FileLock(str(target) + ".lock"):
        if target.is_file():  # another process finished it meanwhile
            return target
        partial = target.with_name(name + ".part")
        try:
            _fetch(url, partial, progress)
        except (urllib.error.URLError, OSError) as err:
            raise RuntimeError(
                f"could not download SAM weights from {url}: {err}. {manual}"
            ) from err
        try:
            verify_sam_file(partial, vit_model, expected_md5=SAM_MD5.get(name))
        except CheckpointError as err:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"the download of {url} is broken and was discarded: {err}") from err
        os.replace(partial, target)
    return target


def _fetch(url: str, partial: Path, progress: bool) -> None:
    """Stream ``url`` into ``partial``, resuming from its current size."""
    from tqdm.auto import tqdm

    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if start and response.status != 206:  # server ignored the range: start over
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        mode = "ab" if start else "wb"
        with (
            open(partial, mode) as fh,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=partial.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(1 << 20):
                fh.write(chunk)
                bar.update(len(chunk))
    if total is not None and partial.stat().st_size != total:
        raise OSError(f"incomplete download: {partial.stat().st_size} of {total} bytes")


def verify_sam_file(path: Path, vit_model: str, expected_md5: str | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is the SAM file of ``vit_model``."""
    if expected_md5 is not None:
        digest = file_md5(path)
        if digest != expected_md5:
            raise CheckpointError(f"{path.name} has MD5 {digest}, expected {expected_md5}")
    state = read_state_dict(path)
    expected = sam_layout(vit_model)
    check_tensors(state, expected, f"SAM file {path}")
    check_no_extra(state, expected, f"SAM file {path}")


def read_sam_tensors(path: Path, expected: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """The ``expected`` tensors of a SAM file, checked (a model needs these frozen tensors)."""
    state = read_state_dict(path)
    check_tensors(state, expected, f"SAM file {path}")
    return {k: state[k] for k in expected}
