"""``panosamic export``: a training run -> the published Hub layout.

``panosamic export RUN_DIR OUT_DIR/<variant>/model.safetensors`` writes the
trainable tensors (``feature_fuser.*``, ``semantic_decoder.*``) of
``model_best.pth`` (or ``--which last``) as safetensors, plus a small
``run_config.json`` with the model config, so that
``load_panosamic(OUT_DIR, subfolder=<variant>)`` rebuilds the model without
further arguments. The files are assembled in a temporary folder beside the
target, reloaded through :func:`panosamic.weights.load_panosamic` and compared
tensor by tensor, and only then moved into place. ``--upload REPO_ID`` pushes
the variant folder to the Hugging Face Hub.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

EXPORT_FORMAT = "panosamic.export/1"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a training run's trainable weights in the Hub layout (and upload them)",
        description=(
            "Write RUN_DIR's trainable weights to OUT (…/<variant>/model.safetensors, the layout "
            "of the published checkpoints) with the run's model config beside them, verify by "
            "reloading, and optionally upload the variant folder to the Hugging Face Hub."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `panosamic train` run directory")
    p.add_argument(
        "output",
        metavar="OUT",
        help="OUT_DIR/<variant>/model.safetensors (or OUT_DIR/<variant>, the file name is added)",
    )
    p.add_argument(
        "--which", choices=("best", "last"), default="best", help="which checkpoint [best]"
    )
    p.add_argument(
        "--sam-weights-path",
        help="SAM file / directory for the verification (default: the run's, else the cache)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.add_argument(
        "--skip-verify",
        action="store_true",
        help="do not reload the export (only when the SAM weights are unavailable here)",
    )
    p.add_argument("--upload", metavar="REPO_ID", help="upload the variant folder to this Hub repo")
    p.add_argument("--revision", help="Hub branch to upload to (default: main)")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--commit-message", help="Hub commit message")
    p.set_defaults(func=_run)


# ------------------------------------------------------------------------ export
def export_target(output: str | Path) -> Path:
    """The ``model.safetensors`` path named by OUT; its parent is the variant folder."""
    from ..weights import HUB_FILENAME

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
    from ..train.checkpoint import BEST_NAME, LAST_NAME, load_checkpoint

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

    from ..eval.evaluator import json_safe
    from ..train.runs import read_run_config

    run_dir = Path(run_dir).expanduser()
    run = read_run_config(run_dir)
    target = export_target(output)
    variant_dir = target.parent
    config_path = variant_dir / "run_config.json"
    if not overwrite and (target.exists() or config_path.exists()):
        raise ValueError(f"{target} already exists; pass --overwrite to replace it")
    tensors, facts = trainable_tensors(run_dir, which)
    info = {
        "format": EXPORT_FORMAT,
        "model": run["model"],
        "dataset": {k: run["dataset"].get(k) for k in ("name", "fold", "class_names")},
        "source": {"run": run_dir.name, "experiment_id": run.get("experiment_id"), **facts},
    }
    info = json_safe(info)
    variant_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=variant_dir.parent))
    try:
        staged = staging / variant_dir.name
        staged.mkdir()
        save_file(
            tensors,
            str(staged / target.name),
            metadata={"format": "pt", "panosamic": json.dumps(info)},
        )
        (staged / config_path.name).write_text(json.dumps(info, indent=2) + "\n")
        if verify:
            sam = sam_weights_path or run["training"].get("sam_weights_path")
            verify_export(staging, variant_dir.name, tensors, sam)
        variant_dir.mkdir(exist_ok=True)
        for name in (config_path.name, target.name):  # the weights last: present = complete
            os.replace(staged / name, variant_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def verify_export(
    root: Path, variant: str, tensors: dict[str, Any], sam_weights_path: str | None
) -> None:
    """Reload ``root/<variant>`` with :func:`load_panosamic` and compare every tensor."""
    import torch

    from ..weights import load_panosamic

    model = load_panosamic(
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


# ------------------------------------------------------------------------ upload
def upload_variant(
    variant_dir: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> str:
    """Upload ``variant_dir`` to ``repo_id/<variant>/``; returns the commit URL."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise RuntimeError(
            f"cannot upload to {repo_id}: HF_HUB_OFFLINE is set. The export is complete in "
            f"{variant_dir}; upload it later with: hf upload {repo_id} {variant_dir} {variant_dir.name}"
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
            f"itself is complete; retry later or run: hf upload {repo_id} {variant_dir} {variant_dir.name}"
        ) from err
    return str(getattr(info, "commit_url", info))


def _run(args: argparse.Namespace) -> int:
    target = export_run(
        args.run_dir,
        args.output,
        which=args.which,
        sam_weights_path=args.sam_weights_path,
        overwrite=args.overwrite,
        verify=not args.skip_verify,
    )
    print(
        f"exported {args.run_dir} ({args.which}) to {target}"
        + ("" if args.skip_verify else " (verified)")
    )
    if args.upload:
        url = upload_variant(
            target.parent,
            args.upload,
            revision=args.revision,
            private=args.private,
            commit_message=args.commit_message,
        )
        print(f"uploaded to {url}")
    return 0
