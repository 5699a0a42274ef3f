"""The Hugging Face Hub: downloads with clear errors, and huggingface_hub's offline switch."""

from __future__ import annotations

from pathlib import Path


def offline() -> bool:
    """huggingface_hub's own offline switch (``HF_HUB_OFFLINE``, read when it is imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_download(
    repo_id: str,
    filename: str,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """``hf_hub_download`` with errors that say what to do.

    Offline (``HF_HUB_OFFLINE``) only the local cache is looked at. A file that
    cannot be had raises RuntimeError with the command that fetches it on a
    connected machine; one that does not exist raises FileNotFoundError.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}/{subfolder + '/' if subfolder else ''}{filename}"
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                subfolder=subfolder,
                revision=revision,
                cache_dir=cache_dir,
                local_dir=local_dir,
                token=token,
                local_files_only=local_files_only or offline(),
            )
        )
    except LocalEntryNotFoundError as err:
        raise RuntimeError(
            f"could not get {where}: the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE is "
            f"set) and the file is not in the local cache. On a machine with internet access run\n"
            f"    hf download {repo_id} --include '{subfolder + '/' if subfolder else ''}*' "
            f"--local-dir ./PanoSAMic\n"
            f"and copy ./PanoSAMic here: it loads as a local folder in the same layout."
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise FileNotFoundError(
            f"{where} does not exist on the Hub (revision {revision or 'main'}): {err}"
        ) from err
