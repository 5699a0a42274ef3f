"""``panosamic synth``, ``prepare`` and ``normals`` through ``panosamic.cli.main``."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from panosamic.cli import build_parser, main
from panosamic.data.normals import angular_error_deg, decode_normals


def test_synth_prepare_normals_round_trip(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    args = ["--count", "3", "--seed", "1", "--height", "16", "--workers", "1", "--no-progress"]
    assert main(["synth", "--dataset", "stanford2d3ds", "--out", str(raw), *args]) == 0
    assert "wrote 3 synthetic stanford2d3ds panoramas" in capsys.readouterr().out
    assert main(["prepare", "stanford2d3ds", str(raw), str(out), "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    assert "3 written" in capsys.readouterr().out
    samples = json.loads((out / "cache_samples_file_names.json").read_text())
    area, names = next(iter(samples.items()))
    sample = out / area / names[0]
    native = np.asarray(Image.open(sample / "normals.webp"))
    # A second run resumes: nothing to do.
    assert main(["prepare", "stanford2d3ds", str(raw), str(out), "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    assert "0 written, 3 already done" in capsys.readouterr().out

    assert main(["normals", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "0 written, 3 already had" in capsys.readouterr().out
    assert main(["normals", str(out), "--overwrite", "--workers", "1", "--no-progress"]) == 0
    computed = np.asarray(Image.open(sample / "normals.webp"))
    a, ok_a = decode_normals(native)
    b, ok_b = decode_normals(computed)
    both = ok_a & ok_b
    assert both.mean() > 0.5 and np.median(angular_error_deg(a[both], b[both])) < 10

    depth_file = next((raw / area / "pano" / "depth").iterdir())
    single = tmp_path / "single.png"
    assert (
        main(["normals", str(depth_file), "--out", str(single), "--dataset", "stanford2d3ds"]) == 0
    )
    image = Image.open(single)
    assert image.mode == "RGB" and image.size == (32, 16)


def test_synth_and_prepare_other_layouts(tmp_path):
    for name in ("matterport3d", "structured3d"):
        raw, out = tmp_path / name, tmp_path / f"{name}-out"
        assert main(["synth", "--dataset", name, "--out", str(raw), "--count", "3", "--height", "8", "--workers", "1", "--no-progress", "--prepare", str(out)]) == 0  # fmt: skip
        assert (out / "cache_area_depth_statistics.json").is_file()


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    raw = tmp_path / "raw"
    assert main(["synth", "--dataset", "stanford2d3ds", "--out", str(raw), "--count", "1", "--height", "8", "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    for f in (raw / "assets").iterdir():
        f.unlink()
    assert (
        main(["prepare", "stanford2d3ds", str(raw), str(tmp_path / "out"), "--workers", "1"]) == 2
    )
    err = capsys.readouterr().err
    assert "panosamic prepare: error:" in err and "semantic_labels.json" in err
    assert main(["prepare", "matterport3d", str(raw), str(tmp_path / "o"), "--scale", "2"]) == 2
    assert "--scale" in capsys.readouterr().err
    assert main(["normals", str(tmp_path / "nothing")]) == 2
    assert main(["synth", "--dataset", "matterport3d", "--out", str(tmp_path / "b"), "--broken", "1"]) == 2  # fmt: skip


def test_bare_r_means_quarter_scale():
    parser = build_parser()
    assert parser.parse_args(["prepare", "matterport3d", "a", "b", "-r"]).scale == "0.25"
    assert parser.parse_args(["prepare", "matterport3d", "a", "b"]).scale == "auto"
    assert parser.parse_args(["prepare", "matterport3d", "a", "b", "--scale", "0.5"]).scale == "0.5"
