"""Preparation: raw synthetic downloads -> the processed layout, resumable and exact."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panosamic.data.catalog import dataset_info
from panosamic.data.prepare import output_size, prepare_dataset, read_broken_rooms
from panosamic.data.synth import plan_samples, write_synthetic_dataset
from panosamic.utils.atomic import TMP_PREFIX

H, W = 16, 32


def _prepare(name, raw, out, **kw):
    kw.setdefault("workers", 1)
    return prepare_dataset(name, raw, out, progress=False, log=lambda _: None, **kw)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _raw_files(name: str, raw: Path, location: str, sample: str) -> dict[str, Path]:
    from panosamic.data.prepare import sample_inputs

    return sample_inputs(name, raw, location, sample)


@pytest.mark.parametrize("name", ["stanford2d3ds", "matterport3d", "structured3d"])
def test_prepared_files_keep_the_raw_values(tmp_path, name):
    raw, out = tmp_path / "raw", tmp_path / "out"
    plan = write_synthetic_dataset(name, raw, 3, seed=2, height=H, width=W)
    summary = _prepare(name, raw, out)
    assert summary.written == 3 and summary.skipped == 0
    info = dataset_info(name)
    samples = json.loads((out / "cache_samples_file_names.json").read_text())
    assert samples == {loc: sorted(s.name for s in plan if s.location == loc) for loc in sorted({s.location for s in plan})}  # fmt: skip
    stats = json.loads((out / "cache_area_depth_statistics.json").read_text())
    assert sorted(stats) == sorted(samples)
    for s in plan:
        files = _raw_files(name, raw, s.location, s.name)
        folder = out / s.location / s.name
        rgb = Image.open(folder / "rgb.webp")
        assert rgb.format == "WEBP" and rgb.mode == "RGB" and rgb.size == (W, H)
        np.testing.assert_array_equal(
            np.asarray(rgb), np.asarray(Image.open(files["rgb"]).convert("RGB"))
        )
        depth_img = Image.open(folder / "depth.png")
        assert depth_img.mode == "I;16"
        depth, raw_depth = np.asarray(depth_img), np.asarray(Image.open(files["depth"]))
        np.testing.assert_array_equal(depth, raw_depth)
        mask = np.asarray(Image.open(folder / "depth_mask.webp"))
        assert mask.shape == (H, W, 3) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask[..., 2] > 0, raw_depth != info.depth_invalid)
        if name == "matterport3d":
            assert not (folder / "normals.webp").exists()
        else:
            np.testing.assert_array_equal(np.asarray(Image.open(folder / "normals.webp")), np.asarray(Image.open(files["normals"])))  # fmt: skip
        if name == "stanford2d3ds":
            np.testing.assert_array_equal(np.asarray(Image.open(folder / "instances.webp")), np.asarray(Image.open(files["semantics"])))  # fmt: skip
        else:
            sem = Image.open(folder / "semantics.png")
            assert sem.mode == ("L" if name == "matterport3d" else "P")
            np.testing.assert_array_equal(
                np.asarray(sem), np.asarray(Image.open(files["semantics"]))
            )
        counts, edges = stats[s.location]
        metres = raw_depth[raw_depth != info.depth_invalid] / info.depth_divisor
        expected, _ = np.histogram(metres, bins=info.histogram_bins, range=(0, info.histogram_max))
        assert counts == expected.tolist()
        assert edges[:3] == ([0.0, 1.0, 2.0] if name == "structured3d" else [0.0, 0.1, 0.2])
    if name == "stanford2d3ds":
        assert sorted(p.name for p in (out / "assets").iterdir()) == ["colors.npy", "name2label.json", "semantic_labels.json"]  # fmt: skip
    if name == "matterport3d":
        assert not (raw / "assets").exists()  # the reference needed an (empty) assets/ here


def test_scale_resizes_every_file_alike(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_synthetic_dataset("stanford2d3ds", raw, 1, seed=3, height=32, width=64)
    _prepare("stanford2d3ds", raw, out, scale=0.5)
    folder = next((out / "area_1").iterdir())
    for f in ("rgb.webp", "depth.png", "depth_mask.webp", "normals.webp", "instances.webp"):
        assert Image.open(folder / f).size == (32, 16), f
    sem = np.asarray(Image.open(folder / "instances.webp"))
    raw_sem = np.asarray(Image.open(next((raw / "area_1" / "pano" / "semantic").iterdir())))
    assert {tuple(c) for c in sem.reshape(-1, 3)} <= {tuple(c) for c in raw_sem.reshape(-1, 3)}


def test_output_sizes():
    assert output_size(4096, 2048, None) == (1024, 512)  # auto: 512 x 1024
    assert output_size(2048, 1024, None) == (1024, 512)
    assert output_size(1024, 512, None) is None and output_size(128, 64, None) is None
    assert output_size(4096, 2048, 0.25) == (1024, 512)
    assert output_size(100, 50, 0.333) == (33, 16)  # truncated, as the reference
    assert output_size(100, 50, 1.0) is None
    with pytest.raises(ValueError, match="scale"):
        prepare_dataset("matterport3d", ".", ".", scale=1.5)


def test_interrupted_preparation_resumes_to_the_same_output(tmp_path):
    raw = tmp_path / "raw"
    plan = write_synthetic_dataset(
        "matterport3d", raw, 4, seed=4, height=H, width=W, per_location=2
    )
    clean = tmp_path / "clean"
    _prepare("matterport3d", raw, clean)

    # Run 2 dies on the third sample (a corrupt file), after two samples are done.
    bad = _raw_files("matterport3d", raw, plan[2].location, plan[2].name)["rgb"]
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:50])
    resumed = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match=plan[2].name):
        _prepare("matterport3d", raw, resumed)
    done = [s for s in plan if (resumed / s.location / s.name).is_dir()]
    assert [s.name for s in done] == [plan[i].name for i in (0, 1, 3)]
    assert not (resumed / "cache_area_depth_statistics.json").exists()
    # A worker killed mid-sample leaves only a hidden temporary folder.
    partial = resumed / plan[2].location / f"{TMP_PREFIX}{plan[2].name}.killed"
    partial.mkdir()
    (partial / "rgb.webp").write_bytes(b"half")
    finished_mtime = (resumed / plan[0].location / plan[0].name / "rgb.webp").stat().st_mtime_ns

    bad.write_bytes(good_bytes)
    summary = _prepare("matterport3d", raw, resumed)
    assert (summary.written, summary.skipped) == (1, 3)
    assert not partial.exists()
    assert (
        resumed / plan[0].location / plan[0].name / "rgb.webp"
    ).stat().st_mtime_ns == finished_mtime
    assert _tree_bytes(resumed) == _tree_bytes(clean)


def test_rerun_leaves_every_file_as_it_was(tmp_path):
    """Content and modification time of every file, the copied assets/ included."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_synthetic_dataset("stanford2d3ds", raw, 2, seed=6, height=H, width=W)
    _prepare("stanford2d3ds", raw, out)

    def snapshot() -> dict[Path, tuple[bytes, int]]:
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}

    before = snapshot()
    assert any(p.parent.name == "assets" for p in before)
    time.sleep(0.02)  # a rewrite would show in the modification times
    summary = _prepare("stanford2d3ds", raw, out)
    assert (summary.written, summary.skipped) == (0, 2)
    assert snapshot() == before


def test_parallel_preparation_equals_serial(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic_dataset("stanford2d3ds", raw, 3, seed=5, height=H, width=W)
    _prepare("stanford2d3ds", raw, tmp_path / "serial")
    _prepare("stanford2d3ds", raw, tmp_path / "parallel", workers=2)
    assert _tree_bytes(tmp_path / "parallel") == _tree_bytes(tmp_path / "serial")


def test_stanford_needs_its_assets(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic_dataset("stanford2d3ds", raw, 1, seed=6, height=H, width=W)
    (raw / "assets" / "name2label.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"name2label\.json"):
        _prepare("stanford2d3ds", raw, tmp_path / "out")


def test_no_samples_is_a_clear_error(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="no structured3d samples"):
        _prepare("structured3d", tmp_path / "raw", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _prepare("structured3d", tmp_path / "missing", tmp_path / "out")


def test_structured3d_broken_rooms_are_matched_exactly(tmp_path):
    raw = tmp_path / "raw"
    plan = write_synthetic_dataset(
        "structured3d", raw, 2, seed=7, height=H, width=W, per_location=2
    )
    rendering = raw / plan[0].location / "2D_rendering"
    for s, new in zip(plan, ("1", "10"), strict=True):
        (rendering / s.name).rename(rendering / new)
    broken_rgb = rendering / "10" / "panorama" / "full" / "rgb_rawlight.png"
    broken_rgb.write_bytes(broken_rgb.read_bytes()[:80])
    entries = [
        f"Structured3D/{plan[0].location}/2D_rendering/10/panorama/full/rgb_rawlight.png",
        f"{plan[0].location}/2D_rendering/1/perspective/full/0/rgb_rawlight.png",  # not a panorama
    ]
    (raw / "assets").mkdir()
    (raw / "assets" / "broken_files.json").write_text(json.dumps(entries))
    assert read_broken_rooms(raw / "assets" / "broken_files.json") == {(plan[0].location, "10")}
    out = tmp_path / "out"
    summary = _prepare("structured3d", raw, out)
    assert summary.broken_skipped == [f"{plan[0].location}/10"]
    assert sorted(p.name for p in (out / plan[0].location).iterdir()) == ["1"]
    assert (out / "assets" / "broken_files.json").is_file()


def test_synthetic_broken_rooms_are_skipped(tmp_path):
    raw = tmp_path / "raw"
    plan = write_synthetic_dataset("structured3d", raw, 3, seed=8, height=H, width=W, broken=1)
    listed = json.loads((raw / "assets" / "broken_files.json").read_text())
    assert listed == [
        f"{plan[2].location}/2D_rendering/{plan[2].name}/panorama/full/rgb_rawlight.png"
    ]
    summary = _prepare("structured3d", raw, tmp_path / "out")
    assert summary.written == 2 and len(summary.broken_skipped) == 1


def test_matterport_normals_from_depth(tmp_path):
    raw = tmp_path / "raw"
    plan = write_synthetic_dataset("matterport3d", raw, 1, seed=9, height=H, width=W)
    _prepare("matterport3d", raw, tmp_path / "out", normals_from_depth=True)
    normals = Image.open(tmp_path / "out" / plan[0].location / plan[0].name / "normals.webp")
    assert normals.mode == "RGB" and normals.size == (W, H)
    assert np.asarray(normals).std() > 10
    with pytest.raises(ValueError, match="own normals"):
        _prepare("stanford2d3ds", raw, tmp_path / "x", normals_from_depth=True)


def test_synthetic_sample_plan_is_deterministic():
    a, b = plan_samples("matterport3d", 6, seed=1), plan_samples("matterport3d", 6, seed=1)
    assert a == b and a != plan_samples("matterport3d", 6, seed=2)
    scenes = [s.location for s in a]
    assert scenes[0] == "17DRP5sb8fy" and scenes[1] == "2azQ1b91cZZ" and scenes[2] == "2t7WUuJeko7"
