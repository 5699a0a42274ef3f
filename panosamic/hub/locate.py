"""Finding the checkpoint file a user names: a file, a run, a Hub-layout folder or a Hub repo."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .catalog import DEFAULT_REPO_ID, PUBLISHED_VARIANTS
from .huggingface import hub_download

HUB_FILENAME = "model.safetensors"
# A training run's folder: run_config.json (format RUN_FORMAT; exports carry one of their
# own format), the best and the last checkpoint, the per-epoch history.
RUN_CONFIG_NAME = "run_config.json"
RUN_FORMAT = "panosamic.run/1"
BEST_NAME = "model_best.pth"
LAST_NAME = "model_last.pth"
RUN_CHECKPOINTS = (BEST_NAME, LAST_NAME)
HISTORY_NAME = "history.json"


@dataclass(frozen=True)
class LocatedCheckpoint:
    """A checkpoint file, the ``run_config.json`` found beside it, and its variant name."""

    path: Path
    run_config: dict[str, Any] | None = None
    variant: str | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent


def locate_checkpoint(
    repo_id_or_path: str | Path,
    subfolder: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> LocatedCheckpoint:
    """Find the checkpoint file: a local file, a run dir, a Hub-layout dir, or a Hub repo."""
    path = Path(repo_id_or_path).expanduser()
    variant = subfolder or (path.parent.name if path.is_file() else None)
    if path.is_file():
        return LocatedCheckpoint(path, _run_config_near(path.parent), variant)
    if path.is_dir():
        root = path / subfolder if subfolder else path
        if not root.is_dir():
            present = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise FileNotFoundError(f"{path} has no sub-folder {subfolder!r}; present: {present}")
        for name in (HUB_FILENAME, *RUN_CHECKPOINTS):
            if (root / name).is_file():
                return LocatedCheckpoint(
                    root / name, _run_config_near(root), subfolder or root.name
                )
        variants = hub_layout_variants(root)
        if variants and not subfolder:
            raise ValueError(
                f"{root} holds several variants in the Hub layout; choose one with --variant "
                f"(subfolder=): {', '.join(variants)}"
            )
        raise FileNotFoundError(
            f"no checkpoint in {root}: expected {HUB_FILENAME} (Hub layout <dir>/<variant>/{HUB_FILENAME}) "
            f"or {' / '.join(RUN_CHECKPOINTS)} (a training run)"
        )
    text = str(repo_id_or_path)
    if text.startswith((".", "/", "~")) or text.count("/") != 1 or path.parent.is_dir():
        near = f"; {path.parent} exists, so it may be a typo" if path.parent.is_dir() else ""
        raise FileNotFoundError(
            f"{repo_id_or_path} is neither an existing file or folder nor a Hub repo id "
            f"(owner/name){near}"
        )
    repo_id = str(repo_id_or_path)
    if repo_id == DEFAULT_REPO_ID and subfolder not in PUBLISHED_VARIANTS:
        raise ValueError(
            f"subfolder {subfolder!r} is not a published variant of {repo_id}; "
            f"choose one of {list(PUBLISHED_VARIANTS)}"
        )
    file = hub_download(
        repo_id,
        HUB_FILENAME,
        subfolder=subfolder,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
    )
    return LocatedCheckpoint(file, None, subfolder)


def hub_layout_variants(folder: Path) -> list[str]:
    """The sub-folders of ``folder`` that hold a ``model.safetensors`` (the Hub layout)."""
    if not folder.is_dir():
        return []
    return sorted(p.parent.name for p in folder.glob(f"*/{HUB_FILENAME}"))


def _run_config_near(directory: Path) -> dict[str, Any] | None:
    file = directory / RUN_CONFIG_NAME
    return json.loads(file.read_text()) if file.is_file() else None
