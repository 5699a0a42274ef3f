"""Labelled point clouds: on the surfaces their rays hit, with the right labels, merged by pose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from panosamic.cli import main
from panosamic.clouds.ply import read_ply, write_ply
from panosamic.clouds.points import (
    LabelledCloud,
    VoxelGrid,
    cloud_from_panorama,
    transform,
    voxel_downsample,
)
from panosamic.clouds.poses import (
    OURS_TO_OPENCV,
    PoseError,
    match_poses,
    read_poses,
    stanford_pose,
)
from panosamic.data.synth import expected_semantics
from panosamic.data.viewpoints import nearest_surface_label, render_viewpoints, surface_distance
from tests.conftest import model_flags

H, W = 128, 256


@pytest.fixture(scope="module")
def views():
    return render_viewpoints(seed=5, count=2, height=H, width=W)


def truth_cloud(view, stride: int = 1) -> LabelledCloud:
    r = view.rendering
    return cloud_from_panorama(
        r.depth, r.valid, r.rgb, r.semantics.astype(np.int64), instances=r.instances, stride=stride
    )


def test_points_lie_on_the_surface_their_ray_hit(views):
    for view in views:
        cloud = truth_cloud(view)
        world = transform(cloud, view.pose)
        assert len(cloud) == int(view.rendering.valid.sum()) > 0.9 * H * W
        distance = surface_distance(
            view.rendering.room, world.xyz.astype(np.float64), cloud.instance
        )
        assert distance.max() < 0.01  # 1 cm at exact depth
        # the camera frame: x forward at the image centre, y left, z up
        centre = cloud_from_panorama(view.rendering.depth, view.rendering.valid, view.rendering.rgb,
                                     view.rendering.semantics.astype(np.int64))  # fmt: skip
        row = centre.xyz.reshape(H, W, 3)[H // 2]
        assert row[W // 2, 0] > 0 and abs(row[W // 2, 1]) < 0.1 * row[W // 2, 0]
        assert row[W // 4, 1] > 0  # left of the centre: +y


def test_ground_truth_clouds_carry_the_label_of_their_surface(views):
    for view in views:
        cloud = transform(truth_cloud(view), view.pose)
        nearest = nearest_surface_label(view.rendering.room, cloud.xyz.astype(np.float64))
        assert (nearest == cloud.label).mean() > 0.999


def test_two_viewpoints_merged_with_their_poses_land_on_the_same_surfaces(views):
    a, b = (transform(truth_cloud(v), v.pose) for v in views)
    assert not np.allclose(views[0].pose, views[1].pose)
    tree = cKDTree(a.xyz)
    distance, index = tree.query(b.xyz)
    same_surface = a.instance[index] == b.instance
    assert (
        np.median(distance) < 0.06 and same_surface.mean() > 0.9
    )  # the pixel spacing, ~5 cm at 3 m
    # without the poses they would not
    raw = truth_cloud(views[1])
    off = surface_distance(views[1].rendering.room, raw.xyz.astype(np.float64), raw.instance)
    assert np.median(off) > 0.2
    # voxel merge: majority label per voxel, each voxel on a surface of that label
    grid = VoxelGrid(0.05, keep_instances=False)
    grid.add(a)
    grid.add(b)
    merged = grid.result()
    assert len(merged) < len(a) + len(b) and (merged.instance == -1).all()
    nearest = nearest_surface_label(views[0].rendering.room, merged.xyz.astype(np.float64))
    assert (nearest == merged.label).mean() > 0.97  # voxels straddling two surfaces may differ


def test_cloud_points_follow_the_pixels_row_by_row_with_their_attributes():
    from panosamic.data.sphere import pixel_directions

    rng = np.random.default_rng(3)
    h, w, stride = 31, 62, 3
    metres = rng.uniform(0.5, 9, (h, w)).astype(np.float32)
    metres[0, 0], metres[3, 3] = np.nan, 0  # neither becomes a point
    valid = rng.random((h, w)) > 0.2
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels, instances = rng.integers(-1, 13, (h, w)), rng.integers(-1, 4, (h, w))
    confidence = rng.random((h, w), dtype=np.float32)
    cloud = cloud_from_panorama(metres, valid, rgb, labels, instances=instances,
                                confidence=confidence, stride=stride)  # fmt: skip
    keep = np.zeros((h, w), bool)
    keep[::stride, ::stride] = True
    keep &= valid & np.isfinite(metres) & (metres > 0)
    row, col = np.nonzero(keep)  # row-major order
    expected = pixel_directions(h, w)[row, col] * metres[row, col, None]
    assert np.allclose(cloud.xyz, expected, atol=1e-5) and cloud.xyz.dtype == np.float32
    assert np.array_equal(cloud.rgb, rgb[row, col])
    assert np.array_equal(cloud.label, labels[row, col]) and cloud.label.dtype == np.int32
    assert np.array_equal(cloud.instance, instances[row, col])
    assert np.array_equal(cloud.confidence, confidence[row, col])
    as_bytes = cloud_from_panorama(metres, valid.astype(np.uint8), rgb, labels, stride=stride)
    assert np.array_equal(as_bytes.xyz, cloud.xyz)  # a 0/1 mask is a mask


def test_top_probability_is_the_softmax_maximum_exactly():
    import torch

    from panosamic.inference.run import top_probability

    logits = torch.randn(13, 150, 40) * 4
    whole = torch.softmax(logits, dim=0).amax(0)
    assert torch.equal(top_probability(logits, rows=64), whole)  # 150 rows: a short last block


def test_voxel_majority_and_means():
    xyz = np.array([[0.01, 0, 0], [0.02, 0, 0], [0.03, 0, 0], [1.5, 0, 0]], np.float32)
    rgb = np.array([[0, 0, 0], [10, 10, 10], [20, 20, 20], [5, 5, 5]], np.uint8)
    cloud = LabelledCloud(xyz, rgb, np.array([2, 1, 1, 3]), np.array([-1, 4, 4, 7]),
                          np.array([0.5, np.nan, 1.0, 0.2], np.float32))  # fmt: skip
    out = voxel_downsample(cloud, 0.1)
    assert out.label.tolist() == [1, 3] and out.instance.tolist() == [4, 7]
    assert np.allclose(out.xyz[0], [0.02, 0, 0]) and out.rgb[0].tolist() == [10, 10, 10]
    assert np.allclose(out.confidence, [0.75, 0.2])  # unknown confidences left out
    tie = LabelledCloud(
        xyz[:2], rgb[:2], np.array([5, 2]), np.array([-1, -1]), np.ones(2, np.float32)
    )
    assert voxel_downsample(tie, 0.1).label.tolist() == [2]  # ties to the lowest class


def test_voxel_votes_across_clouds_negative_coordinates_and_none(monkeypatch):
    import panosamic.clouds.points as points

    def cloud(xyz, label, instance):
        n = len(label)
        return LabelledCloud(np.asarray(xyz, np.float32), np.zeros((n, 3), np.uint8),
                             np.asarray(label), np.asarray(instance), np.ones(n, np.float32))  # fmt: skip

    monkeypatch.setattr(points, "COMPACT_ROWS", 1)  # fold the parts after every cloud
    grid = VoxelGrid(0.1)
    # one cube at negative coordinates, fed in three clouds: class 2 wins 3 to 2 overall
    grid.add(cloud([[-0.05, -0.05, -0.05]] * 2, [1, 1], [5, 5]))
    grid.add(cloud([[-0.01, -0.02, -0.03]] * 2, [2, 2], [7, 7]))
    grid.add(cloud([[-0.02, -0.01, -0.01], [0.05, 0.05, 0.05]], [2, -1], [-1, -1]))
    out = grid.result()
    order = np.argsort(out.xyz[:, 0])
    assert out.label[order].tolist() == [2, -1]  # a cube with only "none" stays none
    assert out.instance[order][0] == 7  # the instance of a class-2 point, not class 1's 5
    assert np.allclose(out.xyz[order][0], [-0.028, -0.030, -0.034], atol=1e-6)  # mean of all 5
    # none loses to any class, however many points it has
    tie = cloud([[0.01, 0, 0]] * 3, [-1, -1, 4], [-1, -1, -1])
    assert voxel_downsample(tie, 0.1).label.tolist() == [4]


def test_names_that_are_not_ascii_are_written_escaped(views, tmp_path):
    path = tmp_path / "c.ply"
    write_ply(path, truth_cloud(views[0], stride=8), ["panosamic küche/p0\nsecond line"])
    assert b"comment panosamic k\\xfcche/p0 second line\n" in path.read_bytes()[:300]
    assert len(read_ply(path)) > 0


def test_pose_matching_finds_every_pose_before_any_work():
    eye = np.eye(4)
    names = ["scene_a/p0", "scene_b/p0", "scene_a/p1"]
    matched = match_poses({"scene_a/p0": eye, "scene_b/p0": 2 * eye, "p1": 3 * eye}, names)
    assert [m[0, 0] for m in matched.values()] == [1, 2, 3]
    with pytest.raises(PoseError, match=r"'scene_a/p0', 'scene_b/p0' \(2 of 3"):
        match_poses({"p0": eye, "p1": eye}, names)  # "p0" would fit two panoramas


def test_ply_round_trip_and_format(views, tmp_path):
    cloud = truth_cloud(views[0], stride=4)
    cloud.confidence[:] = np.linspace(0, 1, len(cloud))
    path = tmp_path / "c.ply"
    write_ply(path, cloud)
    header = path.read_bytes()[:400].decode("latin-1")
    assert header.startswith("ply\nformat binary_little_endian 1.0")
    for prop in ("float x", "float y", "float z", "uchar red", "uchar green", "uchar blue",
                 "int label", "int instance", "float confidence"):  # fmt: skip
        assert f"property {prop}\n" in header
    back = read_ply(path)
    for field in ("xyz", "rgb", "label", "instance", "confidence"):
        assert np.array_equal(getattr(back, field), getattr(cloud, field)), field


def test_pose_files(tmp_path):
    pose = np.eye(4)
    pose[:3, 3] = [1, 2, 3]
    (tmp_path / "p.json").write_text(json.dumps({"a": pose.tolist()}))
    assert np.array_equal(read_poses(tmp_path / "p.json")["a"], pose)
    (tmp_path / "p.csv").write_text(
        "name,"
        + ",".join(f"m{i}" for i in range(16))
        + "\n"
        + "b,"
        + ",".join(map(str, pose.ravel()))
        + "\n"
    )
    assert np.array_equal(read_poses(tmp_path / "p.csv")["b"], pose)
    scaled = pose.copy()
    scaled[0, 0] = 2
    bad = {"scaled": scaled.tolist(), "short": [[1, 0, 0], [0, 1, 0]], "text": [["a"] * 4] * 4}
    for name, matrix in bad.items():
        (tmp_path / "bad.json").write_text(json.dumps({name: matrix}))
        with pytest.raises(PoseError, match=repr(name)):
            read_poses(tmp_path / "bad.json")


def test_stanford_pose_files(tmp_path):
    yaw = 0.7
    ours = np.eye(4)
    ours[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    ours[:3, 3] = [4.0, -1.5, 1.2]
    # the file: world -> OpenCV camera
    cv_to_world = np.eye(4)
    cv_to_world[:3, :3] = ours[:3, :3] @ OURS_TO_OPENCV.T
    cv_to_world[:3, 3] = ours[:3, 3]
    world_to_cv = np.linalg.inv(cv_to_world)
    path = tmp_path / "camera_x_domain_pose.json"
    path.write_text(
        json.dumps(
            {"camera_rt_matrix": world_to_cv[:3].tolist(), "camera_location": ours[:3, 3].tolist()}
        )
    )
    assert np.allclose(stanford_pose(path), ours)
    path.write_text(
        json.dumps({"camera_rt_matrix": world_to_cv[:3].tolist(), "camera_location": [0, 0, 0]})
    )
    with pytest.raises(PoseError, match="camera_location"):
        stanford_pose(path)


def test_pointcloud_command_on_a_run_and_the_merged_capture(tmp_path, capsys):
    from tests.test_segment_capture import PAIRING, write_room

    for i in range(2):
        write_room(tmp_path / "cap", f"p{i}", seed=40 + i)
    Path(tmp_path / "cap" / "rgb" / "lonely_rgb.png").write_bytes(
        (tmp_path / "cap" / "rgb" / "p0_rgb.png").read_bytes()
    )
    model = model_flags(tmp_path / "m", "tiny-dual")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "cap" / "rgb" / "p0_rgb.png"), str(tmp_path / "cap" / "rgb" / "p1_rgb.png"),
            *PAIRING, *model, "--depth-scale", "1000", "--depth-max", "8", "--no-instances", "--quiet",
            "--workers", "0", "--out", str(out), "--save", "labels,probs,pointcloud"]  # fmt: skip
    assert main(args) == 0
    seg_cloud = read_ply(out / "p0_rgb" / "pointcloud.ply")
    assert len(seg_cloud) > 0.5 * 64 * 128 and np.isfinite(seg_cloud.confidence).all()
    assert set(np.unique(seg_cloud.label)) <= set(range(5))
    # the command rebuilds the same cloud from the folder
    (out / "p0_rgb" / "pointcloud.ply").unlink()
    poses = {"p0_rgb": np.eye(4).tolist(), "p1_rgb": np.eye(4).tolist()}
    (tmp_path / "poses.json").write_text(json.dumps(poses))
    merged = tmp_path / "merged.ply"
    merge = [
        "pointcloud",
        str(out),
        "--poses",
        str(tmp_path / "poses.json"),
        "--merge",
        str(merged),
    ]
    assert main(merge) == 0
    again = read_ply(out / "p0_rgb" / "pointcloud.ply")
    assert np.allclose(again.xyz, seg_cloud.xyz) and np.array_equal(again.label, seg_cloud.label)
    assert np.allclose(again.confidence, seg_cloud.confidence, atol=1e-3)  # float16 probabilities
    assert len(read_ply(merged)) > 0
    # a pose missing for a panorama names it
    (tmp_path / "poses.json").write_text(json.dumps({"p0_rgb": np.eye(4).tolist()}))
    assert main(merge) == 2
    assert "no pose for panorama 'p1_rgb'" in capsys.readouterr().err
    # not a run
    assert main(["pointcloud", str(tmp_path / "cap")]) == 2
    assert "not a `panosamic segment` output folder" in capsys.readouterr().err


def write_rgb_only_model(root: Path) -> list[str]:
    """A tiny RGB-only model (random trainable weights on the tiny SAM) in the Hub layout."""
    import torch
    from safetensors.torch import save_file

    from panosamic.model import PanoSAMic
    from panosamic.model.config import PanoSAMicConfig
    from tests.conftest import golden_model_json, write_hub_layout

    hub, sam, config = write_hub_layout(root, "tiny-single")
    data = {**golden_model_json("tiny-single"), "modalities": ["image"]}
    config.write_text(json.dumps(data))
    torch.manual_seed(0)
    model = PanoSAMic(PanoSAMicConfig.from_dict(data), semantic_only=True)
    save_file(model.trainable_state_dict(), hub / "tiny-single" / "model.safetensors")
    return ["--checkpoint", str(hub), "--variant", "tiny-single", "--config", str(config),
            "--sam-weights-path", str(sam)]  # fmt: skip


def test_panorama_without_depth_gets_no_cloud(tmp_path, capsys):
    from tests.test_segment_capture import write_room

    write_room(tmp_path / "cap", "p0", seed=50)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "cap" / "rgb" / "p0_rgb.png"), *write_rgb_only_model(tmp_path / "m"),
            "--no-instances", "--quiet", "--workers", "0", "--out", str(out), "--save", "labels,pointcloud"]  # fmt: skip
    assert main(args) == 0  # not an error for the run
    assert "no point cloud for 1 panoramas without depth: p0_rgb" in capsys.readouterr().out
    assert (out / "p0_rgb" / "labels.png").is_file()
    assert not (out / "p0_rgb" / "pointcloud.ply").exists()
    for summary in (
        json.loads((out / "p0_rgb" / "summary.json").read_text()),
        json.loads((out / "run_summary.json").read_text())["panoramas"][0],
    ):
        assert "no depth: no point cloud" in summary["notes"]
    assert main(["pointcloud", str(out)]) == 0
    assert "no cloud for p0_rgb: no depth, so no point cloud" in capsys.readouterr().err
    assert main(["view", str(tmp_path / "cap"), "--no-open"]) == 2
    assert "not a `panosamic segment` output folder" in capsys.readouterr().err


def test_pointcloud_command_on_a_prepared_dataset_with_stanford_poses(tmp_path):
    from panosamic.data.datasets import PanoramaDataset
    from panosamic.data.files import read_mask
    from panosamic.data.synth import make_prepared_dataset

    prepared = make_prepared_dataset("stanford2d3ds", tmp_path / "ds", count=2, seed=3)
    data = PanoramaDataset("stanford2d3ds", prepared, split="all", modalities=("image",))
    names = [data.sample_name(i) for i in range(len(data))]
    # Stanford2D3DS's raw pose files: world -> OpenCV camera; here each camera moved 10 m along x
    for k, name in enumerate(names):
        area, sample = name.split("/")
        pose_dir = tmp_path / "raw" / area / "pano" / "pose"
        pose_dir.mkdir(parents=True, exist_ok=True)
        cv_to_world = np.eye(4)
        cv_to_world[:3, :3] = OURS_TO_OPENCV.T
        cv_to_world[:3, 3] = [10.0 * (k + 1), 0, 0]
        record = {"camera_rt_matrix": np.linalg.inv(cv_to_world)[:3].tolist(),
                  "camera_location": cv_to_world[:3, 3].tolist()}  # fmt: skip
        (pose_dir / f"{sample}_pose.json").write_text(json.dumps(record))
    out, merged = tmp_path / "clouds", tmp_path / "merged.ply"
    args = ["pointcloud", str(prepared), "--out", str(out), "--stanford-poses", str(tmp_path / "raw"),
            "--merge", str(merged), "--merge-voxel", "0.001"]  # fmt: skip
    assert main(args) == 0
    total = 0
    for i, name in enumerate(names):
        cloud = read_ply(out / f"{name}.ply")
        valid = read_mask(prepared / name / "depth_mask.webp")
        labels, _ = data.ground_truth(i)
        assert np.array_equal(cloud.label, labels[valid])  # the ground truth, pixel by pixel
        assert (cloud.confidence == 1).all()
        total += len(cloud)
    world = read_ply(merged)
    assert len(world) > 0.9 * total  # 1 mm voxels: almost every point kept
    assert world.xyz[:, 0].min() > 10 - 9 and world.xyz[:, 0].max() > 20 - 9


def test_synth_views_capture_segmented_and_merged_with_its_poses(tmp_path, capsys):
    from panosamic.data.files import read_depth16

    cap = tmp_path / "cap"
    assert main(["synth", "--dataset", "stanford2d3ds", "--views", "2", "--count", "2",
                 "--height", "64", "--seed", "5", "--out", str(cap), "--no-progress"]) == 0  # fmt: skip
    assert "panosamic pointcloud OUT --poses" in capsys.readouterr().out
    poses = read_poses(cap / "poses.json")
    assert sorted(poses) == ["room00_view0", "room00_view1", "room01_view0", "room01_view1"]
    truth = render_viewpoints(seed=5, count=2, height=64, width=128, dataset="stanford2d3ds")
    world = []
    for k, view in enumerate(truth):
        name = f"room00_view{k}"
        assert np.allclose(poses[name], view.pose)
        millimetres = read_depth16(cap / "depth" / f"{name}.png")
        assert np.abs(millimetres / 1000 - view.rendering.depth).max() <= 0.0005
        semantic = np.asarray(Image.open(cap / "semantic" / f"{name}.png")).astype(np.int64)
        assert np.array_equal(np.where(semantic == 255, -1, semantic),
                              expected_semantics("stanford2d3ds", view.rendering))  # fmt: skip
        world.append(transform(truth_cloud(view), view.pose).xyz)
    assert poses["room01_view0"][1, 3] - poses["room00_view0"][1, 3] > 8  # rooms side by side
    # segment the capture, then merge its clouds with the written poses
    out = tmp_path / "out"
    assert main(["segment", str(cap / "rgb"), "--depth", "{dir}/../depth/{stem}.png", "--normals",
                 "{dir}/../normal/{stem}.png", *model_flags(tmp_path / "m", "tiny-dual"), "--depth-scale", "1000",
                 "--no-instances", "--quiet", "--workers", "0", "--out", str(out),
                 "--save", "labels,pointcloud"]) == 0  # fmt: skip
    merged = tmp_path / "capture.ply"
    assert (
        main(["pointcloud", str(out), "--poses", str(cap / "poses.json"), "--merge", str(merged)])
        == 0
    )
    cloud = read_ply(merged)
    room0 = cloud.xyz[cloud.xyz[:, 1] < poses["room01_view0"][1, 3] - 6]
    distance, _ = cKDTree(np.concatenate(world)).query(room0)
    assert len(room0) > 1000 and np.quantile(distance, 0.99) < 0.05  # on the room's surfaces


def test_cloud_and_viewer_options_are_checked_and_only_count_where_they_matter(tmp_path, capsys):
    from panosamic.inference.run import RunSettings

    for bad, message in ((["--save", "overlay,viewer"], "add 'labels'"),
                         (["--save", "labels,pointcloud", "--cloud-stride", "0"], "at least 1")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["segment", "x.png", "--out", str(tmp_path), *bad])
        assert message in capsys.readouterr().err
    assert main(["pointcloud", str(tmp_path), "--poses", str(tmp_path / "p.json")]) == 2
    assert "add --merge" in capsys.readouterr().err
    model = {"variant": "v"}
    plain = RunSettings(save=("labels",))
    assert RunSettings(save=("labels", "viewer")).key(model) == plain.key(model)
    assert RunSettings(save=("labels",), cloud_stride=4).key(model) == plain.key(model)
    clouds = RunSettings(save=("labels", "pointcloud"))
    assert RunSettings(save=("labels", "pointcloud"), cloud_stride=4).key(model) != clouds.key(
        model
    )
