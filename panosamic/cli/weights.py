"""``panosamic weights``: list the published checkpoints, fetch SAM and Hub weights ahead of time."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..hub.catalog import VIT_MODELS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list published checkpoints; download SAM or Hub weights ahead of time",
        description="List the published checkpoints and fetch weights for offline use.",
    )
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.required = True

    listing = sub.add_parser("list", help="the published checkpoints and the paper's scores")
    listing.set_defaults(func=_list)

    sam = sub.add_parser(
        "sam", help="download an official SAM file into the cache (or a directory)"
    )
    sam.add_argument("vit_model", choices=VIT_MODELS)
    sam.add_argument(
        "--dir", type=Path, default=None, help="target directory (default: the SAM cache)"
    )
    sam.set_defaults(func=_sam)

    hub = sub.add_parser(
        "hub", help="download published checkpoints into a local Hub-layout directory"
    )
    hub.add_argument(
        "variants", nargs="+", help="variant names (see `panosamic weights list`) or 'all'"
    )
    hub.add_argument(
        "--local-dir", type=Path, required=True, help="where to put <variant>/model.safetensors"
    )
    hub.add_argument("--repo", default=None, help="Hub repo id (default dfki-av/PanoSAMic)")
    hub.add_argument("--revision", default=None)
    hub.set_defaults(func=_hub)


def _list(args: argparse.Namespace) -> int:
    from ..hub.catalog import PUBLISHED

    print(
        f"{'variant':36s} {'mIoU':>6s} {'mAcc':>6s}  (paper; Stanford: 3-fold mean, Matterport: validation)"
    )
    for family in PUBLISHED:
        macc = "-" if family.paper_macc is None else f"{family.paper_macc:.2f}"
        for variant in family.variants:
            print(f"{variant:36s} {family.paper_miou:6.2f} {macc:>6s}")
    return 0


def _sam(args: argparse.Namespace) -> int:
    from ..hub.sam import download_sam_weights, sam_cache_dir

    target = args.dir or sam_cache_dir()
    print(download_sam_weights(args.vit_model, cache_dir=target))
    return 0


def _hub(args: argparse.Namespace) -> int:
    from ..hub.catalog import DEFAULT_REPO_ID, PUBLISHED_VARIANTS
    from ..hub.huggingface import hub_download
    from ..hub.locate import HUB_FILENAME

    repo = args.repo or DEFAULT_REPO_ID
    variants = list(PUBLISHED_VARIANTS) if args.variants == ["all"] else args.variants
    unknown = (
        [v for v in variants if v not in PUBLISHED_VARIANTS] if repo == DEFAULT_REPO_ID else []
    )
    if unknown:
        raise ValueError(f"unknown variants {unknown}; see `panosamic weights list`")
    for variant in variants:
        path = hub_download(
            repo, HUB_FILENAME, subfolder=variant, revision=args.revision, local_dir=args.local_dir
        )
        print(path)
    return 0
