"""``panosamic weights``: list the published checkpoints, fetch SAM and Hub weights ahead of time."""

from __future__ import annotations

import argparse
from pathlib import Path

# Paper numbers (arXiv 2601.07447, Tables 1, 2 and 5): 3-fold mean for Stanford2D3DS,
# the validation split for Matterport3D (which reports no mAcc).
PAPER_SCORES: dict[str, tuple[float, float | None]] = {
    "stanford2d3ds-vith-rgb": (59.62, 74.11),
    "stanford2d3ds-vith-rgbd": (60.90, 73.95),
    "stanford2d3ds-vith-rgbdn": (61.57, 74.04),
    "stanford2d3ds-vitl-rgbdn": (60.90, 73.09),
    "stanford2d3ds-vitb-rgbdn": (56.68, 70.49),
    "matterport3d-vith-rgb": (46.59, None),
    "matterport3d-vith-rgbd": (48.43, None),
}


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
    sam.add_argument("vit_model", choices=("vit_b", "vit_l", "vit_h"))
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
    from ..weights import PUBLISHED_VARIANTS

    print(
        f"{'variant':36s} {'mIoU':>6s} {'mAcc':>6s}  (paper; Stanford: 3-fold mean, Matterport: validation)"
    )
    for variant in PUBLISHED_VARIANTS:
        miou, macc = PAPER_SCORES[variant.rsplit("-fold", 1)[0]]
        print(f"{variant:36s} {miou:6.2f} {'-' if macc is None else f'{macc:.2f}':>6s}")
    return 0


def _sam(args: argparse.Namespace) -> int:
    from ..weights import download_sam_weights, sam_cache_dir

    target = args.dir or sam_cache_dir()
    print(download_sam_weights(args.vit_model, cache_dir=target))
    return 0


def _hub(args: argparse.Namespace) -> int:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from ..weights import DEFAULT_REPO_ID, HUB_FILENAME, PUBLISHED_VARIANTS

    repo = args.repo or DEFAULT_REPO_ID
    variants = list(PUBLISHED_VARIANTS) if args.variants == ["all"] else args.variants
    unknown = (
        [v for v in variants if v not in PUBLISHED_VARIANTS] if repo == DEFAULT_REPO_ID else []
    )
    if unknown:
        raise ValueError(f"unknown variants {unknown}; see `panosamic weights list`")
    for variant in variants:
        try:
            path = hf_hub_download(
                repo,
                HUB_FILENAME,
                subfolder=variant,
                revision=args.revision,
                local_dir=args.local_dir,
            )
        except LocalEntryNotFoundError as err:
            raise RuntimeError(
                f"could not reach the Hugging Face Hub for {repo}/{variant}: {err}"
            ) from err
        print(path)
    return 0
