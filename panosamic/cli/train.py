"""``panosamic train``: train PanoSAMic with the reference's protocol (also under torchrun).

The options are generated from :class:`~panosamic.train.options.TrainOptions`,
where each is declared once with its default and help.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from . import options


def register(subparsers: Any) -> None:
    from ..train.options import TrainOptions

    p = subparsers.add_parser(
        "train",
        help="train the fusion and decoder on a prepared dataset (torchrun for several GPUs)",
        description=(
            "Train PanoSAMic's fusion and decoder on a frozen SAM encoder with the "
            "reference's protocol (Ranger21, LR warm-up / warm-down, Jaccard or scheduled "
            "CE/Jaccard loss, best epoch on the held-out split). Several GPUs or nodes: "
            "torchrun --nproc-per-node N -m panosamic.cli train ... "
            "When resuming, options left out are taken from the run."
        ),
    )
    groups: dict[str, Any] = {}
    for f in fields(TrainOptions):
        cli = f.metadata["cli"]
        group = groups.get(cli["group"]) or groups.setdefault(
            cli["group"], p.add_argument_group(cli["group"])
        )
        _add(group, f.name, f.default, cli)
    p.set_defaults(func=_run)


def _add(group: Any, name: str, default: Any, cli: dict[str, Any]) -> None:
    """One training option; ``None`` means "not given", so that a resume can tell."""
    shown = "" if default is None or isinstance(default, bool) else f" [{_shown(default)}]"
    if name in options.SHARED:
        options.add(group, name, more=(cli["help"] + shown).strip(), default=None)
        return
    flag = cli["flag"] or "--" + name.replace("_", "-")
    # the reference's spelling too: --batch-size and --batch_size (once each)
    flags = tuple(dict.fromkeys((flag, "--" + flag[2:].replace("-", "_"))))
    if isinstance(default, bool):
        action = {"action": "store_const", "const": not default, "dest": name}
        group.add_argument(*flags, default=None, help=cli["help"], **action)
        return
    kwargs = {"type": cli["type"], "choices": cli["choices"]}
    group.add_argument(
        *flags, dest=name, default=None, help=cli["help"] + shown,
        **{k: v for k, v in kwargs.items() if v is not None},
    )  # fmt: skip


def _shown(default: Any) -> str:
    return ",".join(default) if isinstance(default, tuple) else str(default)


def _run(args: argparse.Namespace) -> int:
    from ..train.options import option_names
    from ..train.trainer import resolve_options, run_training

    values = {name: getattr(args, name, None) for name in option_names()}
    run_training(resolve_options(values))
    return 0
