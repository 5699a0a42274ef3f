"""Writing files so that a reader never sees a half-written one.

Every file is written to a temporary name in the target's own folder
(``.tmp-<name>.<random>``), flushed to disk, given the mode a plain ``open``
would give it under the user's umask, and renamed into place; a crash leaves
at most a ``.tmp-*`` entry, which :func:`remove_stale_temporaries` clears.
Folders that must appear complete (a prepared sample, an export) are built
in a :func:`staging_directory` and moved into place with :func:`replace_directory`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    try:  # thread-safe where /proc exists
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_image(image: Any, path: str | Path, **params: Any) -> None:
    """Save a Pillow image atomically; the format follows the file extension."""
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **params))


def copy_file(src: str | Path, dst: str | Path) -> bool:
    """Copy ``src`` to ``dst`` atomically unless ``dst`` already holds the same bytes
    (then it is left untouched, modification time included). True when written."""
    src, dst = Path(src), Path(dst)
    same_size = dst.is_file() and dst.stat().st_size == src.stat().st_size
    if same_size and dst.read_bytes() == src.read_bytes():
        return False
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
    return True


def copy_tree(src: str | Path, dst: str | Path) -> int:
    """Merge the files of ``src`` into ``dst`` with :func:`copy_file`; returns how many were written."""
    src, dst = Path(src), Path(dst)
    written = 0
    for item in sorted(src.rglob("*")):
        target = dst / item.relative_to(src)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            written += copy_file(item, target)
    return written


def json_safe(value: Any) -> Any:
    """NaN and inf -> None (JSON null), recursively; tensors and numpy scalars -> Python."""
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, dict)):
        value = value.tolist()  # tensors, numpy arrays
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(
    path: str | Path, data: Any, *, indent: int | None = 2, allow_nan: bool = False
) -> None:
    """Write ``data`` as JSON, atomically.

    By default strict JSON (NaN and inf become null, :func:`json_safe`), indented,
    with a final newline. ``indent=None, allow_nan=True`` writes ``json.dumps``'
    plain output (the dataset caches, byte for byte as the reference writes them).
    """
    if not allow_nan:
        data = json_safe(data)
    text = json.dumps(data, indent=indent, allow_nan=allow_nan)
    atomic_write_text(path, text + ("\n" if indent is not None else ""))


@contextmanager
def staging_directory(parent: str | Path, name: str) -> Iterator[Path]:
    """A fresh ``.tmp-<name>.<random>`` folder in ``parent`` (created with the umask's mode),
    removed with whatever is left in it when the block ends."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}.", dir=parent))
    try:
        os.chmod(folder, 0o777 & ~_umask())  # mkdtemp makes it private
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def replace_directory(staged: Path, final: Path) -> None:
    """Rename a finished folder to ``final``, replacing an older one there.

    The older folder is first renamed aside, so ``final`` is only ever absent
    for the instant between two renames, never half-written.
    """
    if not final.exists():
        os.replace(staged, final)
        return
    with staging_directory(final.parent, f"{final.name}.old") as aside:
        os.replace(final, aside / final.name)
        os.replace(staged, final)


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the ``.tmp-*`` files and folders an interrupted run left in ``directory``."""
    removed = []
    for stale in Path(directory).glob(f"{TMP_PREFIX}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed
