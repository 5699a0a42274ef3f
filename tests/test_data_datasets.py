"""Dataset classes: round trip synth -> prepare -> tensors, folds, d_t, weights, augmentations."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from panosamic.data import DATASET_CLASS_NAMES, DATASETS, build_dataset, collate_panoramas
from panosamic.data.augment import Augmentation, apply_augmentation, draw_augmentation
from panosamic.data.catalog import dataset_info
from panosamic.data.normals import encode_normals
from panosamic.data.stats import depth_thresholds
from panosamic.data.synth import (
    expected_semantics,
    make_prepared_dataset,
    plan_samples,
    synthetic_sample,
)

H, W = 32, 64
SEED = 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One small prepared copy of every dataset (3 samples: fold 1 train and eval exist)."""
    root = tmp_path_factory.mktemp("prepared")
    return {
        name: make_prepared_dataset(name, root / name, count=3, seed=SEED, height=H, width=W)
        for name in DATASETS
    }


def _truth(name: str, ds, i: int):
    plan = plan_samples(name, 3, SEED)
    index = next(s.index for s in plan if f"{s.location}/{s.name}" == ds.sample_name(i))
    return synthetic_sample(name, SEED, index, H, W)


@pytest.mark.parametrize("name", DATASETS)
def test_round_trip_gives_the_documented_tensors(prepared, name):
    info = dataset_info(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Matterport3D: no normals
        datasets = [build_dataset(name, prepared[name], split=split) for split in ("train", "eval")]
    for ds in datasets:
        assert ds.augment == (ds.split == "train")
        assert ds.class_names == DATASET_CLASS_NAMES[name] and ds.num_classes == len(ds.class_names)
        assert ds.palette.shape == (ds.num_classes, 3) and ds.palette.dtype == np.uint8
        assert ds.mask_black == (name != "stanford2d3ds")
        for i in range(len(ds)):
            data, labels = ds.load(i)
            truth = _truth(name, ds, i)
            for key in ("image", "depth"):
                t = data[key]
                assert t.dtype == torch.float32 and t.shape == (3, H, W)
                assert t.min() >= 0 and t.max() <= 255
            sem = labels["semantics"]
            assert sem.dtype == torch.int64 and sem.shape == (1, H, W)
            assert labels["instances"].numel() == 0
            expected = expected_semantics(name, truth)
            if ds.mask_black:
                expected = np.where(data["image"].sum(0).numpy() == 0, -1, expected)
            np.testing.assert_array_equal(sem[0].numpy(), expected)
            assert (sem >= -1).all() and (sem < ds.num_classes).all()
            # Pseudo-disparity from the exact rendered depth, within the depth quantisation.
            d_t = ds.depth_threshold
            disparity = (1 - np.minimum(truth.depth, d_t) / d_t) * truth.valid * 255
            np.testing.assert_allclose(data["depth"][0].numpy(), disparity, atol=255 * 0.002 / d_t)
            assert torch.equal(data["depth"][0], data["depth"][1]) and torch.equal(data["depth"][0], data["depth"][2])  # fmt: skip
            if info.normals_required:
                normals = encode_normals(truth.normals, truth.valid).transpose(2, 0, 1)
                np.testing.assert_array_equal(data["normals"].numpy(), normals)
            else:
                assert data["normals"].numel() == 0
            if name != "matterport3d":  # lossless RGB (Matterport's raw RGB is JPEG)
                np.testing.assert_array_equal(data["image"].numpy(), truth.rgb.transpose(2, 0, 1))


def test_folds_contain_the_right_areas_and_scenes(tmp_path):
    stanford = make_prepared_dataset(
        "stanford2d3ds", tmp_path / "s", count=7, seed=1, height=8, width=16
    )
    folds = {
        1: ({"area_1", "area_2", "area_3", "area_4", "area_6"}, {"area_5a", "area_5b"}),
        2: ({"area_1", "area_3", "area_5a", "area_5b", "area_6"}, {"area_2", "area_4"}),
        3: ({"area_2", "area_4", "area_5a", "area_5b"}, {"area_1", "area_3", "area_6"}),
    }
    for fold, (train, held_out) in folds.items():
        for split, areas in (("train", train), ("eval", held_out)):
            ds = build_dataset(
                "stanford2d3ds", stanford, fold=fold, split=split, modalities=("image",)
            )
            assert {ds.sample_name(i).split("/")[0] for i in range(len(ds))} == areas
    with pytest.raises(ValueError, match="folds"):
        build_dataset("stanford2d3ds", stanford, fold=4)

    mp = make_prepared_dataset("matterport3d", tmp_path / "m", count=6, seed=1, height=8, width=16)
    scenes = {}
    for fold in (1, 2):
        for split in ("train", "eval"):
            ds = build_dataset("matterport3d", mp, fold=fold, split=split, modalities=("image",))
            scenes[fold, split] = {ds.sample_name(i).split("/")[0] for i in range(len(ds))}
    assert scenes[1, "train"] == scenes[2, "train"] == {"17DRP5sb8fy", "1LXtFkjw3qL"}
    assert scenes[1, "eval"] == {"2azQ1b91cZZ", "8194nk5LbLH"}  # validation scenes 61, 62
    assert scenes[2, "eval"] == {"2t7WUuJeko7", "5ZKStnWn8Zo"}  # test scenes 68, 69
    assert build_dataset("fvmatterport3d", mp, modalities=("image",)).name == "matterport3d"

    s3d = make_prepared_dataset("structured3d", tmp_path / "t", count=3, seed=1, height=8, width=16)
    for fold, scene in ((1, "scene_03000"), (2, "scene_03250")):
        ds = build_dataset("structured3d", s3d, fold=fold, split="eval", modalities=("image",))
        assert [ds.sample_name(i).split("/")[0] for i in range(len(ds))] == [scene]
    with pytest.raises(ValueError, match="folds"):
        build_dataset("structured3d", s3d, fold=3)


def test_threshold_bin_rule_on_known_histograms():
    edges = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    counts = [0, 10, 0, 80, 5, 5]  # cumulative 0, 10, 10, 90, 95, 100
    # ratios 0.9, 0.95, 0.99, 0.995, 0.999, 1: first bin reaching r * total, its left edge
    assert depth_thresholds(counts, edges) == [0.3, 0.4, 0.5, 0.5, 0.5, 0.5]
    assert depth_thresholds([1, 0, 999], [0.0, 1.0, 2.0, 3.0]) == [2.0] * 6
    with pytest.raises(ValueError, match="empty"):
        depth_thresholds([0, 0], [0.0, 0.1, 0.2])


def test_depth_threshold_comes_from_the_training_split_and_is_cached(prepared, tmp_path):
    root = prepared["stanford2d3ds"]
    stats = json.loads((root / "cache_area_depth_statistics.json").read_text())
    train_areas = [a for a in dataset_info("stanford2d3ds").folds[1][0] if a in stats]
    # Independent of the code under test: the 99.5 % quantile of the training depths, floored to 0.1 m.
    depths = []
    for area in train_areas:
        for sample in (root / area).iterdir():
            raw = np.asarray(Image.open(sample / "depth.png")).astype(np.float64)
            depths.append(raw[raw != 65535] * 128 / 65535)
    depths = np.sort(np.concatenate(depths))
    quantile = depths[int(np.ceil(0.995 * len(depths))) - 1]
    expected = np.floor(quantile * 10 + 1e-9) / 10
    train = build_dataset("stanford2d3ds", root, split="train")
    held_out = build_dataset("stanford2d3ds", root, split="eval", depth_inlier_ratio=0.995)
    assert train.depth_threshold == pytest.approx(expected) and held_out.depth_threshold == train.depth_threshold  # fmt: skip
    cache = json.loads((root / "cache_splits_depth_statistics.json").read_text())
    assert list(cache) == ["1"] and len(cache["1"]) == 6 and cache["1"][3] == train.depth_threshold
    # A cache hit is used as is.
    cache["1"][5] = 42.0
    (root / "cache_splits_depth_statistics.json").write_text(json.dumps(cache))
    assert build_dataset("stanford2d3ds", root, depth_inlier_ratio=1).depth_threshold == 42.0
    with pytest.raises(ValueError, match="depth_inlier_ratio"):
        build_dataset("stanford2d3ds", root, depth_inlier_ratio=0.8)
    # Matterport3D caches one flat list for all folds.
    build_dataset("matterport3d", prepared["matterport3d"], modalities=("image", "depth"))
    flat = json.loads((prepared["matterport3d"] / "cache_splits_depth_statistics.json").read_text())
    assert isinstance(flat, list) and len(flat) == 6
    assert build_dataset("matterport3d", prepared["matterport3d"], depth_threshold=2.5, modalities=("image", "depth")).depth_threshold == 2.5  # fmt: skip


def test_missing_statistics_and_samples_are_clear_errors(tmp_path):
    root = make_prepared_dataset("structured3d", tmp_path, count=3, seed=2, height=8, width=16)
    (root / "cache_area_depth_statistics.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"cache_area_depth_statistics\.json"):
        build_dataset("structured3d", root)
    assert len(build_dataset("structured3d", root, modalities=("image", "normals"))) == 1
    cache = json.loads((root / "cache_samples_file_names.json").read_text())
    cache["scene_00000"].append("not_prepared")
    (root / "cache_samples_file_names.json").write_text(json.dumps(cache))
    with pytest.raises(FileNotFoundError, match="not_prepared"):
        build_dataset("structured3d", root, modalities=("image",))
    with pytest.raises(FileNotFoundError, match="panosamic prepare"):
        build_dataset("structured3d", tmp_path / "nowhere")


def test_mask_black_rule(prepared, tmp_path):
    root = prepared["stanford2d3ds"]
    rgb_only = build_dataset("stanford2d3ds", root, split="eval", modalities=("image",))
    rgbd = build_dataset("stanford2d3ds", root, split="eval", modalities=("image", "depth"))
    assert rgb_only.mask_black and not rgbd.mask_black
    sample = root / rgb_only.sample_name(0)
    original = (sample / "rgb.webp").read_bytes()
    rgb = np.asarray(Image.open(sample / "rgb.webp")).copy()
    labels = rgbd.load(0)[1]["semantics"][0].numpy()
    rgb[labels >= 0] = 0  # blacken labelled pixels
    Image.fromarray(rgb).save(sample / "rgb.webp", lossless=True)
    try:
        assert (rgb_only.load(0)[1]["semantics"] == -1).all()
        np.testing.assert_array_equal(rgbd.load(0)[1]["semantics"][0].numpy(), labels)
        forced = build_dataset("stanford2d3ds", root, split="eval", modalities=("image", "depth"), mask_black=True)  # fmt: skip
        assert (forced.load(0)[1]["semantics"] == -1).all()
    finally:
        (sample / "rgb.webp").write_bytes(original)


def test_class_weights_follow_the_rule_and_are_cached(tmp_path):
    root = make_prepared_dataset("stanford2d3ds", tmp_path, count=3, seed=4, height=16, width=32)
    ds = build_dataset("stanford2d3ds", root, split="train", modalities=("image", "depth"))
    counts = np.zeros(13)
    for i in range(len(ds)):
        sem = ds.load(i)[1]["semantics"].numpy()
        counts += np.bincount(sem[sem >= 0], minlength=13)
    weights = ds.class_weights(progress=False)
    assert weights.dtype == torch.float32 and weights.shape == (13,)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(weights.numpy(), (counts.sum() / counts).astype(np.float32))
    assert torch.isinf(weights[counts == 0]).all()
    cache = json.loads((root / "cache_class_weights.json").read_text())
    assert list(cache) == ["1"]
    cache["1"][0] = 7.0
    (root / "cache_class_weights.json").write_text(json.dumps(cache))
    assert build_dataset("stanford2d3ds", root, modalities=("image", "depth")).class_weights(progress=False)[0] == 7.0  # fmt: skip


def _coded_sample(h: int = 6, w: int = 12):
    """Tensors whose values encode the pixel position, identically in every modality."""
    code = torch.arange(h * w, dtype=torch.float32).reshape(h, w) % 251
    data = {
        "image": torch.stack([code, code + 1, code + 2]),
        "depth": code.expand(3, h, w).clone(),
        "normals": torch.stack([code, code, code]),
    }
    labels = {"semantics": code.long()[None], "instances": torch.empty(0)}
    return data, labels


def test_augmentations_keep_every_tensor_aligned():
    gen = torch.Generator().manual_seed(0)
    data, labels = _coded_sample()
    seen = {"flip": 0, "shift": 0, "permute": 0}
    shifts = set()
    n = 2000
    for _ in range(n):
        aug = draw_augmentation(12, gen)
        seen["flip"] += aug.flip
        seen["shift"] += aug.shift > 0
        seen["permute"] += aug.permutation is not None
        shifts.add(aug.shift)
        out, out_labels = apply_augmentation(data, labels, aug)
        code = out_labels["semantics"][0].float()
        assert torch.equal(out["depth"][0], code) and torch.equal(out["normals"][1], code)
        channels = sorted(out["image"][c, 0, 0].item() - code[0, 0].item() for c in range(3))
        assert channels == [0, 1, 2]
        assert out_labels["instances"].numel() == 0
    for key, count in seen.items():
        assert abs(count / n - 0.25) < 0.04, key  # the 1/(n+1) rule; shift 0 is drawn ~ 2% too
    assert shifts <= set(range(12)) and len(shifts) == 12
    flipped, _ = apply_augmentation(data, labels, Augmentation(flip=True))
    assert torch.equal(flipped["depth"][0, :, 0], data["depth"][0, :, -1])
    rolled, _ = apply_augmentation(data, labels, Augmentation(shift=5))
    assert torch.equal(rolled["depth"][0, :, 5], data["depth"][0, :, 0])
    permuted, _ = apply_augmentation(data, labels, Augmentation(permutation=(2, 0, 1)))
    assert torch.equal(permuted["image"][0], data["image"][2]) and torch.equal(permuted["depth"], data["depth"])  # fmt: skip


def test_training_items_are_augmented_and_batches_are_lists(prepared):
    ds = build_dataset("structured3d", prepared["structured3d"], split="train", seed=5)
    gen = torch.Generator().manual_seed(5)
    for i in range(len(ds)):
        expected = apply_augmentation(*ds.load(i), draw_augmentation(W, gen))
        got = ds[i]
        for a, b in zip(expected, got, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)
    assert not build_dataset("structured3d", prepared["structured3d"], split="eval").augment
    # Seeded datasets travel to DataLoader workers (spawn pickles them) and restart their stream.
    copy = pickle.loads(pickle.dumps(ds))
    first = ds.load(0)
    expected = apply_augmentation(*first, draw_augmentation(W, torch.Generator().manual_seed(5)))
    assert torch.equal(copy[0][0]["image"], expected[0]["image"])
    loader = DataLoader(ds, batch_size=2, collate_fn=collate_panoramas)
    inputs, targets = next(iter(loader))
    assert isinstance(inputs, list) and len(inputs) == min(2, len(ds))
    assert set(inputs[0]) == {"image", "depth", "normals"} and inputs[0]["image"].shape == (3, H, W)
    assert set(targets[0]) == {"semantics", "instances"}


def test_unrequested_modalities_are_empty(prepared):
    ds = build_dataset(
        "structured3d", prepared["structured3d"], modalities=("image",), augment=False
    )
    data, _ = ds[0]
    assert data["image"].shape == (3, H, W) and data["depth"].numel() == 0 and data["normals"].numel() == 0  # fmt: skip
    with pytest.raises(ValueError, match="image"):
        build_dataset("structured3d", prepared["structured3d"], modalities=("depth",))
    with pytest.warns(UserWarning, match="panosamic normals"):
        build_dataset("matterport3d", prepared["matterport3d"], modalities=("image", "normals"))
