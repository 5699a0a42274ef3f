"""``panosamic export``: a training run -> the published Hub layout, verified (and uploaded)."""

from __future__ import annotations

import argparse
from typing import Any

from . import options


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
    options.add(
        p, "sam_weights_path", more="for the verification (default: the run's, else the cache)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.add_argument(
        "--skip-verify",
        action="store_true",
        help="do not reload the export (only when the SAM weights are unavailable here)",
    )
    p.add_argument("--upload", metavar="REPO_ID", help="upload the variant folder to this Hub repo")
    options.add(p, "revision", more="to upload to (default: main)")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.add_argument("--commit-message", help="Hub commit message")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..weights.export import export_run, upload_variant

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
