"""Options that several commands share, each declared once with one spelling.

Older spellings stay accepted as aliases (``--subfolder`` for ``--variant``,
``--sam-weights`` and ``--sam_weights_path`` for ``--sam-weights-path``, the
reference's underscore forms). Choices come from the catalogues, so a new
dataset, ViT size or precision appears in every command at once. Only light
modules are imported here: ``panosamic --help`` does not load torch.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ..data.catalog import DATASETS
from ..hub.catalog import VIT_MODELS
from ..model.config import PRECISIONS


@dataclass(frozen=True)
class Option:
    """An option's spellings (the first is the canonical one) and its ``add_argument`` keywords."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.flags[0].lstrip("-").replace("-", "_")

    def add(self, parser: Any, **overrides: Any) -> argparse.Action:
        return parser.add_argument(*self.flags, **{**self.kwargs, **overrides})


SHARED: dict[str, Option] = {
    option.dest: option
    for option in (
        Option(
            ("--checkpoint",),
            {"help": "Hub repo id, Hub-layout folder, training run, export or checkpoint file"},
        ),
        Option(
            ("--variant", "--subfolder"),
            {"help": "the variant folder inside a Hub repo or Hub-layout folder"},
        ),
        Option(
            ("--config", "--config-path", "--config_path"),
            {
                "help": "JSON config: a file, or a packaged name such as config/config_stanford2d3ds_dv.json"
            },
        ),
        Option(
            ("--vit-model", "--vit_model"),
            {"choices": VIT_MODELS, "help": "SAM encoder size"},
        ),
        Option(
            ("--modalities",),
            {"help": "comma-separated: image[,depth][,normals]"},
        ),
        Option(
            ("--sam-weights-path", "--sam-weights", "--sam_weights_path"),
            {
                "dest": "sam_weights_path",
                "help": "official SAM .pth file, or a folder holding it",
            },
        ),
        Option(("--revision",), {"help": "Hub revision: branch, tag or commit"}),
        Option(("--dataset",), {"choices": DATASETS, "help": "dataset name"}),
        Option(("--dataset-path", "--dataset_path"), {"help": "prepared dataset root"}),
        Option(
            ("--device",),
            {"help": "cpu, cuda, cuda:1, mps"},
        ),
        Option(
            ("--precision",),
            {
                "choices": PRECISIONS,
                "help": "fp32; bf16 / fp16: the network under autocast; int8 (CPU only): the "
                "encoder's q/k/v and output projections as int8 products, the rest in bf16",
            },
        ),
        Option(("--workers",), {"type": int, "help": "worker processes"}),
        Option(("--no-progress",), {"action": "store_true", "help": "no progress bar"}),
    )
}


def add(parser: Any, *names: str, more: str = "", **overrides: Any) -> None:
    """Add the shared options ``names`` (their ``dest``s) to ``parser`` or an argument group.

    ``more`` is appended to each one's help (what is special to this command);
    ``overrides`` go to ``add_argument`` (e.g. ``default=None``).
    """
    for name in names:
        option = SHARED[name]
        if more:
            overrides = {**overrides, "help": f"{option.kwargs['help']} {more}"}
        option.add(parser, **overrides)


def add_model_source(parser: argparse.ArgumentParser, checkpoint_default: str | None = None) -> Any:
    """The "model" group: checkpoint, variant, config, ViT size, SAM file, revision."""
    group = parser.add_argument_group("model")
    add(group, "checkpoint", default=checkpoint_default)
    add(group, "variant", "config", "revision")
    add(group, "vit_model", more="(default: read off the checkpoint)")
    add(group, "sam_weights_path", more="(default: the one a run or export names, else the "
        "cache, downloaded when missing)")  # fmt: skip
    return group
