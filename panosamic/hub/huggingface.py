"""The Hugging Face Hub: downloads with clear errors, and huggingface_hub's offline switch."""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

PROBE_SECONDS = 3.0


def offline() -> bool:
    """huggingface_hub's own offline switch (``HF_HUB_OFFLINE``, read when it is imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """One quick connection to the Hub's endpoint (huggingface_hub itself retries for ~25 s).

    Behind a proxy the answer is left to huggingface_hub (True).
    """
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urllib.parse.urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


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

    The local cache is looked at first; offline (``HF_HUB_OFFLINE``), or when one
    quick connection to the Hub fails, nothing else is tried. A file that cannot
    be had raises RuntimeError with the command that fetches it on a connected
    machine; one that does not exist raises FileNotFoundError.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}/{subfolder + '/' if subfolder else ''}{filename}"
    arguments = {
        "subfolder": subfolder,
        "revision": revision,
        "cache_dir": cache_dir,
        "local_dir": local_dir,
        "token": token,
    }
    try:
        try:  # the cache first: no network when the file is there
            return Path(hf_hub_download(repo_id, filename, local_files_only=True, **arguments))
        except LocalEntryNotFoundError:
            if local_files_only or offline() or not hub_reachable():
                raise
        return Path(hf_hub_download(repo_id, filename, **arguments))
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
