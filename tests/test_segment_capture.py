"""`panosamic segment` over whole captures: many inputs, pairing, resume, processes, outputs."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from panosamic.cli import main
from panosamic.data.files import read_rgb, save_png16
from panosamic.data.normals import encode_normals, normals_from_depth
from panosamic.data.synth import render_room
from panosamic.inference.capture import default_variant
from panosamic.inference.sources import PanoramaSource, fill_template, find_panoramas
from tests.conftest import model_flags, write_hub_layout

ROOT = Path(__file__).resolve().parents[1]
H, W = 64, 128


def write_room(folder: Path, stem: str, seed: int) -> None:
    """A capture's files: rgb/<stem>_rgb.png, depth/<stem>_depth.png (mm), normal/<stem>_normal.png."""
    room = render_room(seed, H, W, dataset="stanford2d3ds")
    for sub in ("rgb", "depth", "normal"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(room.rgb).save(folder / "rgb" / f"{stem}_rgb.png")
    save_png16(
        (room.depth * 1000).round().clip(0, 65535).astype(np.uint16),
        folder / "depth" / f"{stem}_depth.png",
    )
    vectors, good = normals_from_depth(room.depth.astype(np.float64), room.valid)
    Image.fromarray(encode_normals(vectors, good)).save(folder / "normal" / f"{stem}_normal.png")


PAIRING = [
    "--depth",
    "{dir}/../depth/{stem:_rgb=_depth}.png",
    "--normals",
    "{dir}/../normal/{stem:_rgb=_normal}.png",
]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    return [*model_flags(root, "tiny-dual"), "--depth-scale", "1000", "--depth-max", "8"]


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    """Two scenes of three panoramas, the second scene one folder deeper."""
    root = tmp_path_factory.mktemp("capture")
    for i in range(3):
        write_room(root / "scene_a", f"p{i}", seed=i)
        write_room(root / "deeper" / "scene_b", f"p{i}", seed=10 + i)
    return root


def segment(args: list[str], model_files: list[str]) -> int:
    return main(["segment", *args, *model_files, "--no-instances", "--quiet", "--workers", "0"])


def test_pairing_templates():
    image = Path("/c/scene/rgb/cam_1_rgb.png")
    assert fill_template("{dir}/../depth/{stem:_rgb=_depth}.png", image) == Path(
        "/c/scene/rgb/../depth/cam_1_depth.png"
    )
    assert fill_template("{dir}/{parent}-{name}{ext}", image) == Path(
        "/c/scene/rgb/rgb-cam_1_rgb.png.png"
    )
    with pytest.raises(LookupError, match="'xyz' does not occur"):
        fill_template("{stem:xyz=a}", image)
    with pytest.raises(ValueError, match="unknown field"):
        fill_template("{folder}", image)


def test_the_model_follows_the_inputs():
    rgb = PanoramaSource("a", Path("a.png"))
    rgbd = PanoramaSource("b", Path("b.png"), depth=Path("d.png"))
    full = PanoramaSource("c", Path("c.png"), depth=Path("d.png"), normals=Path("n.png"))
    assert default_variant([rgb], False) == "stanford2d3ds-vith-rgb-fold1"
    assert default_variant([rgbd], False) == "stanford2d3ds-vith-rgbd-fold1"
    assert default_variant([rgbd], True) == "stanford2d3ds-vith-rgbdn-fold1"
    assert default_variant([full, rgbd], False) == "stanford2d3ds-vith-rgbd-fold1"


def test_inputs_of_every_kind_and_their_problems(capture, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"# a capture list\n{capture}/scene_a/rgb/p1_rgb.png\n{capture}/scene_a/rgb/p1_rgb.png\n"
    )
    (tmp_path / "odd.txt").write_text("not a panorama")
    sources, problems = find_panoramas(
        [str(capture / "scene_a" / "rgb"), str(capture / "deeper" / "*" / "rgb" / "*.png"),
         str(listing), str(tmp_path / "odd.txt"), str(tmp_path / "nothing.png")],
        depth=PAIRING[1], normals=PAIRING[3],
    )  # fmt: skip
    names = [s.name for s in sources]
    assert names == [
        "p0_rgb",
        "p1_rgb",
        "p2_rgb",
        "scene_b/rgb/p0_rgb",
        "scene_b/rgb/p1_rgb",
        "scene_b/rgb/p2_rgb",
    ]
    assert all(s.depth.is_file() and s.normals.is_file() for s in sources)
    reasons = {Path(p.path).name: p.reason for p in problems}
    assert reasons["p1_rgb.png"].startswith("listed twice")
    assert reasons["not a panorama"] == "does not exist"  # a line of a list, read as a path
    assert reasons["nothing.png"] == "does not exist"
    # a folder with depth and normals beside the panoramas: the partners are not panoramas
    flat = tmp_path / "flat"
    flat.mkdir()
    for sub in ("rgb", "depth", "normal"):
        for f in (capture / "scene_a" / sub).iterdir():
            (flat / f.name).write_bytes(f.read_bytes())
    sources, problems = find_panoramas(
        [str(flat)], depth="{dir}/{stem:_rgb=_depth}.png", normals="{dir}/{stem:_rgb=_normal}.png"
    )
    assert [s.name for s in sources] == ["p0_rgb", "p1_rgb", "p2_rgb"] and not problems
    # the same stem in two folders: two outputs
    sources, _ = find_panoramas(
        [str(capture / "scene_a" / "rgb" / "p0_rgb.png"), str(flat / "p0_rgb.png")]
    )
    assert [s.name for s in sources] == ["p0_rgb", "p0_rgb~2"]


def test_a_capture_in_one_run_with_bad_inputs_reported(capture, model_files, tmp_path, capsys):
    bad = tmp_path / "bad"
    write_room(bad, "narrow", seed=20)
    Image.fromarray(np.zeros((H, H, 3), np.uint8)).save(bad / "rgb" / "narrow_rgb.png")  # not 2:1
    write_room(bad, "lonely", seed=21)
    (bad / "depth" / "lonely_depth.png").unlink()  # its partner is missing
    write_room(bad, "broken", seed=22)
    (bad / "rgb" / "broken_rgb.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    inputs = [str(capture / "scene_a" / "rgb"), str(bad / "rgb")]
    assert (
        segment([*inputs, *PAIRING, "--out", str(out), "--save", "labels,masks,probs"], model_files)
        == 1
    )
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["totals"]["segmented"] == 3 and summary["totals"]["failed"] == 3
    failed = {Path(f["path"]).name: f["reason"] for f in summary["failures"]}
    assert "its depth file" in failed["lonely_rgb.png"] and "missing" in failed["lonely_rgb.png"]
    assert "2:1" in failed["narrow_rgb.png"]
    assert "cannot read image" in failed["broken_rgb.png"]
    assert "failed: " in capsys.readouterr().err
    rows = (out / "run_summary.csv").read_text().splitlines()
    assert rows[0].startswith("name,status,seconds,device,instance_masks,class 0")
    assert sum(",failed," in r for r in rows) == 3
    folder = out / "p0_rgb"
    assert sorted(p.name for p in folder.iterdir()) == [
        "labels.png",
        "masks.json",
        "probs.npy",
        "summary.json",
    ]
    probs = np.load(folder / "probs.npy")
    assert probs.dtype == np.float16 and probs.shape == (5, H, W)
    labels = np.asarray(Image.open(folder / "labels.png"))
    assert Image.open(folder / "labels.png").mode == "P"  # indices as pixel values, colours shown
    assert (labels == probs.argmax(0)).mean() > 0.99  # float16 ties may flip a few pixels
    mode = stat.S_IMODE((folder / "labels.png").stat().st_mode)
    assert mode == 0o666 & ~_umask()  # the user's umask, not mkstemp's 0600
    assert not list(out.rglob(".tmp-*"))


def test_resume_skips_what_is_done_and_redoes_what_changed(capture, model_files, tmp_path):
    out = tmp_path / "out"
    args = [str(capture / "scene_a" / "rgb"), *PAIRING, "--out", str(out)]
    assert segment(args, model_files) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert segment(args, model_files) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps
    totals = json.loads((out / "run_summary.json").read_text())["totals"]
    assert (totals["segmented"], totals["skipped"]) == (0, 3)
    # an input that changed is redone, the others are not
    changed = capture / "scene_a" / "rgb" / "p1_rgb.png"
    os.utime(changed, ns=(time.time_ns(), time.time_ns()))
    assert segment(args, model_files) == 0
    totals = json.loads((out / "run_summary.json").read_text())["totals"]
    assert (totals["segmented"], totals["skipped"]) == (1, 2)
    # other settings: all redone, and nothing of the earlier run stays beside the new files
    assert segment([*args, "--save", "labels"], model_files) == 0
    assert sorted(p.name for p in (out / "p0_rgb").iterdir()) == ["labels.png", "summary.json"]
    assert segment([*args, "--save", "labels", "--overwrite"], model_files) == 0
    totals = json.loads((out / "run_summary.json").read_text())["totals"]
    assert (totals["segmented"], totals["skipped"]) == (3, 0)


def test_a_killed_run_leaves_complete_outputs_and_resumes(capture, model_files, tmp_path):
    out = tmp_path / "out"
    many = tmp_path / "many"
    for i in range(12):
        write_room(many, f"k{i:02d}", seed=30 + i)
    args = [sys.executable, "-m", "panosamic.cli", "segment", str(many / "rgb"), *PAIRING, "--out", str(out),
            *model_files, "--no-instances", "--quiet", "--workers", "0"]  # fmt: skip
    process = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*/summary.json"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = [p.parent for p in out.glob("*/summary.json")]
    assert 2 <= len(done) < 12, "the run should have been killed halfway"
    for folder in out.iterdir():  # every visible panorama folder is complete
        if folder.is_dir() and not folder.name.startswith("."):
            files = json.loads((folder / "summary.json").read_text())["files"]
            assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "summary.json"])
    assert segment([str(many / "rgb"), *PAIRING, "--out", str(out)], model_files) == 0
    totals = json.loads((out / "run_summary.json").read_text())["totals"]
    assert totals["skipped"] == len(done) and totals["segmented"] == 12 - len(done)
    assert not list(out.rglob(".tmp-*"))


def test_two_processes_give_what_one_gives(capture, model_files, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    inputs = [str(capture / "scene_a" / "rgb"), str(capture / "deeper" / "scene_b" / "rgb")]
    assert segment([*inputs, *PAIRING, "--out", str(one)], model_files) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
                "-m", "panosamic.cli", "segment", *inputs, *PAIRING, "--out", str(two), *model_files,
                "--no-instances", "--quiet", "--workers", "0"]  # fmt: skip
    result = subprocess.run(
        torchrun,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((two / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["totals"]["segmented"] == 6
    for labels in one.glob("**/labels.png"):
        twin = two / labels.relative_to(one)
        assert np.array_equal(np.asarray(Image.open(labels)), np.asarray(Image.open(twin)))


def test_instance_masks_as_coco_rle(tmp_path):
    from pycocotools import mask as mask_utils

    from panosamic.weights import load_panosamic
    from tests.test_cli_segment import api_inputs, file_args, write_panorama_files

    root, hub, sam, config = write_panorama_files(tmp_path, "tiny-instances")
    out = tmp_path / "out"
    args = ["segment", *file_args(root), "--checkpoint", str(hub), "--variant", "tiny-instances",
            "--config", str(config), "--sam-weights-path", str(sam), "--out", str(out), "--quiet",
            "--save", "masks,instances,panel"]  # fmt: skip
    assert main(args) == 0
    records = json.loads((out / "pano" / "masks.json").read_text())
    model = load_panosamic(
        hub, subfolder="tiny-instances", config_path=config, sam_weights_path=sam
    )
    with torch.no_grad():
        (expected,) = model([api_inputs(root)])
    masks = expected["instance_masks"]
    assert len(records) == len(masks) > 0
    for record, mask in zip(records, masks, strict=True):
        assert set(record) == {"segmentation", "area", "bbox", "predicted_iou", "stability_score"}
        decoded = mask_utils.decode(record["segmentation"]).astype(bool)
        assert np.array_equal(decoded, mask["segmentation"].numpy())
        assert record["area"] == mask["area"] == int(mask_utils.area(record["segmentation"]))
        ys, xs = np.nonzero(decoded)
        assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]


def test_checks_before_the_model_runs(capture, model_files, tmp_path, capsys):
    args = [str(capture / "scene_a" / "rgb"), *PAIRING]
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert segment([*args, "--out", str(a_file)], model_files) == 2
    assert "is a file" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        assert segment([*args, "--out", str(locked)], model_files) == 2
        assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["segment", *args, "--depth-max", "0"])
    assert "must be a positive number" in capsys.readouterr().err
    # a second run into a folder that a run is writing
    from filelock import FileLock

    busy = tmp_path / "busy"
    busy.mkdir()
    with FileLock(str(busy / ".panosamic-segment.lock")):
        assert segment([*args, "--out", str(busy)], model_files) == 2
    assert "another `panosamic segment` run" in capsys.readouterr().err


def test_local_checkpoint_mistakes_fail_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w").mkdir()
    write_room(tmp_path / "cap", "x", seed=1)
    start = time.time()
    assert main(["segment", "cap/rgb/x_rgb.png", "--checkpoint", "w/hubb", "--no-instances"]) == 2
    assert time.time() - start < 10
    assert "typo" in capsys.readouterr().err
    hub, _, _ = write_hub_layout(tmp_path / "m", "tiny-dual")
    (hub / "another").mkdir()
    (hub / "another" / "model.safetensors").write_bytes(b"")
    assert main(["segment", "cap/rgb/x_rgb.png", "--checkpoint", str(hub), "--no-instances"]) == 2
    assert "another, tiny-dual" in capsys.readouterr().err


def test_depth_with_nan_holes_and_16_bit_panoramas(tmp_path, model_files):
    from panosamic.inference.inputs import DepthEncoding, read_panorama

    write_room(tmp_path, "n", seed=3)
    depth = np.asarray(Image.open(tmp_path / "depth" / "n_depth.png")).astype(np.float64) / 1000
    depth[:10] = np.nan
    np.save(tmp_path / "n.npy", depth)
    panorama = read_panorama(
        tmp_path / "rgb" / "n_rgb.png",
        depth=tmp_path / "n.npy",
        depth_encoding=DepthEncoding(1.0, 8.0),
    )
    assert torch.isfinite(panorama.modalities["depth"]).all()
    assert float(panorama.modalities["depth"][:, :10].abs().max()) == 0  # no depth -> 0
    auto = read_panorama(tmp_path / "rgb" / "n_rgb.png", depth=tmp_path / "n.npy")
    assert auto.depth_max is not None and "from this panorama's depths" in auto.notes[0]
    # a 16-bit grayscale panorama keeps its tones (it used to come out almost white)
    gray = (np.linspace(0, 65535, W)[None].repeat(H, 0)).astype(np.uint16)
    save_png16(gray, tmp_path / "gray.png")
    rgb = read_rgb(tmp_path / "gray.png")
    assert rgb.shape == (H, W, 3) and rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255
    assert 120 < rgb[0, W // 2, 0] < 135


def test_unit_range_inputs_warn():
    from panosamic.model.inputs import validate_batch

    batch = [{"image": torch.rand(3, 8, 16)}]
    with pytest.warns(UserWarning, match="at most 1"):
        validate_batch(batch, ("image",))


def test_legend_is_readable_at_any_width():
    from panosamic.inference.pictures import legend

    names = [f"class {k}" for k in range(6)]
    palette = np.eye(6, 3, dtype=np.uint8) * 255
    shares = np.full(6, 1 / 6)
    small, large = legend(names, palette, shares, 128), legend(names, palette, shares, 4096)
    assert small.shape[1] == 128 and large.shape[1] == 4096
    assert large.shape[0] > 3 * small.shape[0] / 6  # the text grows with the picture


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_dataset_of_a_prepared_folder_is_read_off_its_folders(tmp_path):
    from panosamic.inference.sources import prepared_dataset_name

    for locations, name in (
        (["area_1", "area_3"], "stanford2d3ds"),
        (["scene_00000"], "structured3d"),
        (["Hospital", "Parking_Lot"], "tof360"),
        (["2t7WUuJeko7"], "matterport3d"),
    ):
        root = tmp_path / name
        for location in locations:
            (root / location).mkdir(parents=True)
        assert prepared_dataset_name(root) == name
        assert prepared_dataset_name(root, "structured3d") == "structured3d"  # given wins
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without samples"):
        prepared_dataset_name(tmp_path / "empty")


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
def test_the_writer_thread_yields_the_cores_to_the_model():
    from panosamic.inference.run import WRITER_NICENESS, _Writer

    def niceness(**kwargs):
        return os.getpriority(os.PRIO_PROCESS, 0)  # 0: the calling thread

    main_thread = os.getpriority(os.PRIO_PROCESS, 0)
    with _Writer() as writer:
        writer.submit(0, niceness, summary={})
    (record,) = writer.results()
    assert record["files"] == min(main_thread + WRITER_NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, 0) == main_thread  # the model's threads keep theirs
