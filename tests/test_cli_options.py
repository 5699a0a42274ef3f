"""Shared options: one spelling per option in every command, the older spellings still accepted."""

from __future__ import annotations

import pytest

from panosamic.cli import build_parser
from panosamic.cli.options import SHARED

PARSER = build_parser()


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["segment", "p.png", "--sam-weights", "s"], "sam_weights_path", "s"),
        (["segment", "p.png", "--sam-weights-path", "s"], "sam_weights_path", "s"),
        (["segment", "p.png", "--subfolder", "v"], "variant", "v"),
        (["evaluate", "m", "--subfolder", "v"], "variant", "v"),
        (["evaluate", "m", "--sam_weights_path", "s"], "sam_weights_path", "s"),
        (["evaluate", "m", "--dataset_path", "d"], "dataset_path", "d"),
        (["evaluate", "m", "--config_path", "c"], "config", "c"),
        (["evaluate", "m", "--vit_model", "vit_l"], "vit_model", "vit_l"),
        (["evaluate", "--checkpoint", "m"], "checkpoint", "m"),
        (["train", "--sam-weights", "s"], "sam_weights_path", "s"),
        (["train", "--batch_size", "3"], "batch_size", 3),
        (["train", "--experiments_path", "e"], "experiments_path", "e"),
        (["train", "--config-path", "c"], "config", "c"),
        (["train", "--no-augment"], "augment", False),
        (["train", "--delete-last"], "keep_last", False),
        (["export", "run", "out", "--sam-weights", "s"], "sam_weights_path", "s"),
    ],
)
def test_spellings(argv, dest, value):
    assert getattr(PARSER.parse_args(argv), dest) == value


def test_shared_options_have_one_spelling_everywhere():
    """Where a command offers a shared option, it is the shared one: same flags, same choices."""
    commands = PARSER._subparsers._group_actions[0].choices  # the sub-command parsers
    seen = 0
    for name, sub in commands.items():
        for action in sub._actions:
            option = SHARED.get(action.dest)
            if option is None or not action.option_strings:
                continue
            assert tuple(action.option_strings) == option.flags, (name, action.dest)
            assert action.choices == option.kwargs.get("choices"), (name, action.dest)
            seen += 1
    assert seen >= 25


def test_train_options_come_from_train_options():
    """Every TrainOptions field is a flag of `panosamic train`, not given = None (resume)."""
    from dataclasses import fields

    from panosamic.train.options import TrainOptions

    args = PARSER.parse_args(["train"])
    for f in fields(TrainOptions):
        assert getattr(args, f.name) is None, f.name
