"""Class lists and the label decoding of each dataset's encoding, on known pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from panosamic.data.catalog import (
    DATASET_CLASS_NAMES,
    MATTERPORT_TEST,
    MATTERPORT_TRAIN,
    MATTERPORT_VALID,
)
from panosamic.data.labels import (
    decode_matterport,
    decode_stanford,
    decode_structured3d,
    stanford_instance_lookup,
)

STANFORD = ("beam", "board", "bookcase", "ceiling", "chair", "clutter", "column", "door", "floor", "sofa", "table", "wall", "window")  # fmt: skip


def test_class_lists_and_order():
    assert DATASET_CLASS_NAMES["stanford2d3ds"] == STANFORD
    mp = DATASET_CLASS_NAMES["matterport3d"]
    assert len(mp) == 20 and mp[:4] == ("wall", "floor", "chair", "door") and mp[-1] == "shelving"
    assert mp.index("objects") == 7 and mp.index("ceiling") == 13
    s3d = DATASET_CLASS_NAMES["structured3d"]
    assert len(s3d) == 40 and s3d[0] == "wall" and s3d[21] == "ceiling" and s3d[19] == "floor mat"
    assert s3d[-3:] == ("otherstructure", "otherfurniture", "otherprop")
    assert (len(MATTERPORT_TRAIN), len(MATTERPORT_VALID), len(MATTERPORT_TEST)) == (61, 7, 18)
    assert MATTERPORT_TRAIN[0] == "17DRP5sb8fy" and MATTERPORT_TRAIN[-1] == "ZMojNkEp431"
    assert MATTERPORT_VALID[0] == "2azQ1b91cZZ" and MATTERPORT_TEST[-1] == "Vt2qJdWjCF2"


def _stanford_assets(tmp_path, n_instances: int = 400):
    classes = ["wall", "chair", "board", "<UNK>"]
    labels = ["<UNK>_0_<UNK>_0_0"] + [f"{classes[i % 4]}_{i}_office_1_1" for i in range(1, n_instances)]  # fmt: skip
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "semantic_labels.json").write_text(json.dumps(labels))
    name2label = {"<UNK>": 0, **{c: i + 1 for i, c in enumerate(STANFORD)}}
    (assets / "name2label.json").write_text(json.dumps(name2label))
    np.save(assets / "colors.npy", np.zeros((14, 3), np.uint8))
    return assets, labels


def test_stanford_decoding_of_known_pixels(tmp_path):
    assets, labels = _stanford_assets(tmp_path)
    lookup = stanford_instance_lookup(assets)
    assert len(lookup) == len(labels) + 1 and lookup[-1] == 0  # the extra <UNK>
    wall, chair, board = STANFORD.index("wall"), STANFORD.index("chair"), STANFORD.index("board")
    pixels = {
        (0, 0, 0): (-1, -1),  # index 0: <UNK>
        (0, 0, 1): (chair, 0),  # index 1 = "chair_1..." (1 % 4 = 1)
        (0, 0, 4): (wall, 3),  # index 4: "wall_4..."
        (0, 1, 46): (board, 301),  # index 256 + 46 = 302: "board_302..." (302 % 4 = 2)
        (0, 1, 47): (-1, 302),  # index 303: "<UNK>_303..." -> ignore
        (13, 13, 13): (-1, -1),  # the dataset's "missing" colour
        (1, 0, 1): (-1, -1),  # any R != 0 is forced to index 0
    }
    rgb = np.array([list(pixels)], dtype=np.uint8)
    classes, instances = decode_stanford(rgb, lookup)
    assert classes[0].tolist() == [c for c, _ in pixels.values()]
    assert instances[0].tolist() == [i for _, i in pixels.values()]
    with pytest.raises(ValueError, match=r"semantic_labels\.json"):
        decode_stanford(np.array([[[0, 255, 255]]], np.uint8), lookup)


def test_stanford_lookup_needs_the_assets(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"name2label\.json"):
        stanford_instance_lookup(tmp_path)


def test_matterport_remap_of_every_mpcat40_id():
    # The spec's table, written out independently: final class name per raw id.
    groups = {
        "wall": [1], "floor": [2], "chair": [3, 19], "door": [4], "table": [5], "picture": [6],
        "furniture": [7, 13, 33, 34, 36],
        "objects": [8, 12, 14, 20, 22, 24, 27, 28, 29, 30, 35, 37, 38, 39, 40],
        "window": [9, 32], "sofa": [10], "bed": [11], "sink": [15], "stairs": [16],
        "ceiling": [17], "toilet": [18], "mirror": [21], "shower": [23], "bathtub": [25],
        "counter": [26], "shelving": [31],
    }  # fmt: skip
    names = DATASET_CLASS_NAMES["matterport3d"]
    expected = np.full(42, -1)
    for name, ids in groups.items():
        expected[ids] = names.index(name)
    raw = np.arange(42).reshape(6, 7)
    np.testing.assert_array_equal(decode_matterport(raw).ravel(), expected)
    assert decode_matterport(np.array([[0, 41]])).tolist() == [[-1, -1]]
    with pytest.raises(ValueError, match=r"0\.\.41"):
        decode_matterport(np.array([[42]]))


def test_structured3d_labels_shift_by_one():
    raw = np.array([[0, 1, 2, 22, 40]])
    assert decode_structured3d(raw).tolist() == [[-1, 0, 1, 21, 39]]
    with pytest.raises(ValueError, match="NYU40"):
        decode_structured3d(np.array([[41]]))
