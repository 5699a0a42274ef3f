"""A training run -> the published Hub layout, verified; and the upload of a variant folder.

:func:`export_run` writes the trainable tensors (``feature_fuser.*``,
``semantic_decoder.*``) of a run's ``model_best.pth`` (or ``model_last.pth``)
to ``OUT_DIR/<variant>/model.safetensors``, plus a ``run_config.json`` with the
model config and the dataset's class names, so that
``load_panosamic(OUT_DIR, subfolder=<variant>)`` rebuilds the model without
further arguments. A run trained on random frozen SAM weights (``--random-sam``)
has no official SAM file to load them from: its ``sam_random_init.pth`` is
exported beside the weights as ``sam_weights.pth``. The files are assembled in a
temporary folder, reloaded and compared tensor by tensor, and only then moved into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..hub.huggingface import offline
from ..hub.locate import BEST_NAME, HUB_FILENAME, LAST_NAME, RUN_CONFIG_NAME
from ..model.pretrained import SAM_WEIGHTS_KEY
from ..train.checkpoint import load_checkpoint
from ..train.runs import RANDOM_SAM_NAME, read_run_config
from ..utils.atomic import json_safe, staging_directory, write_json

EXPORT_FORMAT = "panosamic.export/1"
EXPORTED_SAM_NAME = "sam_weights.pth"


def export_target(output: str | Path) -> Path:
    """The ``model.safetensors`` path named by OUT; its parent is the variant folder."""
    out = Path(output).expanduser()
    if out.suffix != ".safetensors":
        out = out / HUB_FILENAME
    if out.name != HUB_FILENAME:
        raise ValueError(
            f"the Hub layout names the file {HUB_FILENAME}, got {out.name}; give OUT_DIR/<variant>/{HUB_FILENAME}"
        )
    if out.parent.name in ("", ".", ".."):
        raise ValueError(f"{output}: give a variant folder, e.g. OUT_DIR/my-variant/{HUB_FILENAME}")
    return out


def trainable_tensors(run_dir: Path, which: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's trainable tensors of model_<which>.pth and a few facts about it."""
    from ..model.panosamic import TRAINABLE_PREFIXES

    path = run_dir / (BEST_NAME if which == "best" else LAST_NAME)
    ckpt = load_checkpoint(path)
    tensors = {
        k: v.detach().contiguous().clone()
        for k, v in ckpt["model"].items()
        if k.startswith(TRAINABLE_PREFIXES)
    }
    if not tensors:
        raise ValueError(f"{path} holds no feature_fuser.* / semantic_decoder.* tensors")
    facts = {"checkpoint": path.name, "epoch": ckpt["epoch"], "miou": ckpt.get("miou")}
    return tensors, facts


def export_run(
    run_dir: str | Path,
    output: str | Path,
    *,
    which: str = "best",
    sam_weights_path: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Export a run to ``OUT_DIR/<variant>/model.safetensors``; returns that path."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir).expanduser()
    run = read_run_config(run_dir)
    target = export_target(output)
    variant_dir = target.parent
    if not overwrite and (target.exists() or (variant_dir / RUN_CONFIG_NAME).exists()):
        raise ValueError(f"{target} already exists; pass --overwrite to replace it")
    tensors, facts = trainable_tensors(run_dir, which)
    random_sam = run_dir / RANDOM_SAM_NAME if run["training"]["options"].get("random_sam") else None
    info = json_safe(
        {
            "format": EXPORT_FORMAT,
            "model": run["model"],
            "dataset": {k: run["dataset"].get(k) for k in ("name", "fold", "class_names")},
            "source": {"run": run_dir.name, "experiment_id": run.get("experiment_id"), **facts},
            **({SAM_WEIGHTS_KEY: EXPORTED_SAM_NAME} if random_sam else {}),
        }
    )
    with staging_directory(variant_dir.parent, "export") as staging:
        staged = staging / variant_dir.name
        staged.mkdir()
        save_file(
            tensors,
            str(staged / target.name),
            metadata={"format": "pt", "panosamic": json.dumps(info)},
        )
        write_json(staged / RUN_CONFIG_NAME, info)
        if random_sam is not None:
            shutil.copyfile(random_sam, staged / EXPORTED_SAM_NAME)
        if verify:
            sam = sam_weights_path or run["training"].get("sam_weights_path")
            verify_export(staging, variant_dir.name, tensors, None if random_sam else sam)
        variant_dir.mkdir(exist_ok=True)
        names = [EXPORTED_SAM_NAME] if random_sam is not None else []
        for name in [*names, RUN_CONFIG_NAME, target.name]:  # the weights last: present = complete
            os.replace(staged / name, variant_dir / name)
    return target


def verify_export(
    root: Path, variant: str, tensors: dict[str, Any], sam_weights_path: str | None
) -> None:
    """Reload ``root/<variant>`` with :func:`load_panosamic` and compare every tensor."""
    import torch

    from ..model import PanoSAMic

    model = PanoSAMic.from_pretrained_panosamic(
        root, subfolder=variant, sam_weights_path=sam_weights_path, semantic_only=True
    )
    loaded = model.trainable_state_dict()
    if loaded.keys() != tensors.keys():
        raise RuntimeError(
            "verification failed: the reloaded model has other tensors than the export"
        )
    differing = [k for k, v in tensors.items() if not torch.equal(loaded[k].to(v.dtype), v)]
    if differing:
        raise RuntimeError(f"verification failed: reloaded tensors differ, e.g. {differing[:3]}")


def upload_variant(
    variant_dir: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> str:
    """Upload ``variant_dir`` to ``repo_id/<variant>/``; returns the commit URL."""
    command = f"hf upload {repo_id} {variant_dir} {variant_dir.name}"
    if offline():
        raise RuntimeError(
            f"cannot upload to {repo_id}: HF_HUB_OFFLINE is set. The export is complete in "
            f"{variant_dir}; upload it later with: {command}"
        )
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(variant_dir),
            path_in_repo=variant_dir.name,
            revision=revision,
            commit_message=commit_message or f"Add {variant_dir.name}",
        )
    except Exception as err:  # network, authentication, permissions: all reported the same way
        raise RuntimeError(
            f"upload of {variant_dir} to {repo_id} failed: {type(err).__name__}: {err}. The export "
            f"itself is complete; retry later or run: {command}"
        ) from err
    return str(getattr(info, "commit_url", info))
