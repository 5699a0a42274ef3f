"""The docs tell the truth: the README's Python quick start runs, every CLI example parses,
no page points outside the repository, and the README's checkpoint table is the catalogue's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from panosamic.cli import build_parser
from panosamic.hub.catalog import PUBLISHED
from tests.realsize import VARIANT

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def shell_commands(page: Path) -> list[str]:
    """The commands of a page's bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in code_blocks(page, "bash"):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split(" #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def panosamic_argv(command: str) -> list[str] | None:
    """The arguments of our CLI in a shell command (also under torchrun, python -m), else None."""
    words = shlex.split(command)
    for i, word in enumerate(words):
        if (word.endswith("panosamic") and i == 0) or word.endswith("/panosamic"):
            return words[i + 1 :]
        if word in ("panosamic.cli", "panosamic") and i > 0 and words[i - 1] == "-m":
            return words[i + 1 :]
    return None


EXAMPLES = [
    pytest.param(argv, id=f"{page.name}: {' '.join(argv)[:60]}")
    for page in PAGES
    for command in shell_commands(page)
    if (argv := panosamic_argv(command)) is not None
]


def test_the_pages_have_examples():
    assert len(PAGES) >= 9
    assert len(EXAMPLES) >= 20
    commands = {argv[0] for argv in (p.values[0] for p in EXAMPLES)}
    assert {
        "segment",
        "weights",
        "prepare",
        "synth",
        "train",
        "evaluate",
        "export",
        "bench",
        "info",
        "pointcloud",
        "view",
    } <= commands


@pytest.mark.parametrize("argv", EXAMPLES)
def test_cli_example_parses(argv):
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exit:  # argparse's way of refusing a flag
        pytest.fail(f"does not parse (exit {exit.code}): panosamic {' '.join(argv)}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_stay_inside_the_repository(page):
    text = page.read_text()
    for outside in ("MEASUREMENTS.md", "REFERENCE_BEHAVIOUR.md", "../shared", "shared/spec"):
        assert outside not in text, outside
    assert not re.search(r"\bissue \d", text, re.I), "words that mean nothing to a user"
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):  # relative links
        assert (page.parent / target).exists(), f"broken link {target}"


def test_readme_is_short_and_lists_the_published_checkpoints():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for family in PUBLISHED:
        row = next(line for line in text.splitlines() if f"`{family.name}" in line)
        assert f"{family.paper_miou:.2f}" in row, family.name
        assert family.paper_macc is None or f"{family.paper_macc:.2f}" in row, family.name


@pytest.mark.slow
def test_readme_python_quick_start_runs(vitb_files, monkeypatch):
    """The README's snippet, as written, against real-size files laid out like the Hub.

    The only changes: ViT-B instead of ViT-H (the largest SAM a test can write quickly),
    and a coarse SAM point grid (speed only).
    """
    (snippet,) = code_blocks(ROOT / "README.md", "python")
    assert 'PanoSAMic.from_pretrained_panosamic(\n    "dfki-av/PanoSAMic"' in snippet
    assert "outputs = model(batched_input)" in snippet
    snippet = snippet.replace("stanford2d3ds-vith-rgbdn-fold1", VARIANT)
    snippet = snippet.replace('"vit_h"', '"vit_b"')
    snippet = snippet.replace(
        "outputs = model(batched_input)",
        "model.set_amg(points_per_side=4)\noutputs = model(batched_input)",
    )
    monkeypatch.chdir(vitb_files)  # "dfki-av/PanoSAMic" and "./sam_weights" are folders here
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    model, sem_preds = scope["model"], scope["sem_preds"]
    assert not model.training and model.config.vit_model == "vit_b"
    h, w = scope["batched_input"][0]["image"].shape[-2:]
    assert sem_preds.shape[-2:] == (h, w) and torch.isfinite(sem_preds).all()
