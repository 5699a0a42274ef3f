"""The synthetic renderer, normals from depth and the normals conventions of the augmentations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from panosamic.data.augment import Augmentation, apply_augmentation
from panosamic.data.normals import (
    angular_error_deg,
    decode_normals,
    encode_normals,
    normals_from_depth,
)
from panosamic.data.render import CLASS_INDEX, Room, generate_room, render
from panosamic.data.sphere import pixel_directions
from panosamic.data.synth import render_room


def _world_points(r) -> np.ndarray:
    h, w = r.depth.shape
    return r.depth[..., None] * pixel_directions(h, w) + np.asarray(r.room.camera)


def test_render_is_deterministic_and_self_consistent():
    a = render_room(3, 32, 64, holes=0.01)
    b = render_room(3, 32, 64, holes=0.01)
    for field in ("rgb", "depth", "normals", "semantics", "instances", "valid"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.depth, render_room(4, 32, 64).depth)
    v = a.valid
    assert v.mean() > 0.8 and not v.all()
    np.testing.assert_allclose(np.linalg.norm(a.normals[v], axis=-1), 1.0, atol=1e-5)
    assert (a.depth[v] > 0).all() and (a.depth[~v] == 0).all()
    assert ((a.semantics == -1) == ~v).all() and ((a.instances == 0) == ~v).all()
    assert (a.rgb[~v] == 0).all() and (a.rgb[v].sum(-1) > 0).all()
    # Every instance has one class; the structure is always visible.
    for inst in np.unique(a.instances[v]):
        assert len(np.unique(a.semantics[a.instances == inst])) == 1
        assert a.instance_labels[inst - 1] == _class_name(a.semantics[a.instances == inst][0])
    for name in ("wall", "floor", "ceiling"):
        assert (a.semantics == CLASS_INDEX[name]).any()


def _class_name(index: int) -> str:
    return next(k for k, v in CLASS_INDEX.items() if v == index)


def test_depth_is_exact_on_the_room_structure():
    r = render_room(5, 64, 128)
    world = _world_points(r)
    lx, ly, lz = r.room.size
    np.testing.assert_allclose(world[r.semantics == CLASS_INDEX["floor"], 2], 0.0, atol=1e-4)
    np.testing.assert_allclose(world[r.semantics == CLASS_INDEX["ceiling"], 2], lz, atol=1e-4)
    walls = world[r.semantics == CLASS_INDEX["wall"]]
    to_wall = np.min(np.abs(np.stack([walls[:, 0], walls[:, 0] - lx, walls[:, 1], walls[:, 1] - ly])), 0)  # fmt: skip
    assert np.max(to_wall) < 1e-3
    # Normals face the camera.
    dirs = pixel_directions(64, 128)
    assert (np.einsum("hwc,hwc->hw", r.normals, dirs)[r.valid] < 0).all()


def _mirror_room(room: Room) -> Room:
    """The room mirrored about y = Ly / 2 (camera too): seen from the camera, a y -> -y mirror."""
    ly = room.size[1]

    def flip_y(p):
        return (p[0], ly - p[1], *p[2:])

    surfaces = list(room.surfaces)
    surfaces[2], surfaces[3] = surfaces[3], surfaces[2]
    return dataclasses.replace(
        room,
        camera=flip_y(room.camera),
        surfaces=surfaces,
        boxes=[dataclasses.replace(b, center=flip_y(b.center), yaw=-b.yaw) for b in room.boxes],
        cylinders=[dataclasses.replace(c, center=flip_y(c.center)) for c in room.cylinders],
        lights=[(flip_y(p), power) for p, power in room.lights],
    )


def _torch_normals(normals: np.ndarray, valid: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(encode_normals(normals, valid).transpose(2, 0, 1).astype(np.float32))


def _median_error(encoded: torch.Tensor, exact: np.ndarray, mask: np.ndarray) -> float:
    """Median angle to the exact normals over the vertical surfaces (floors would hide errors)."""
    decoded, _ = decode_normals(encoded.numpy().transpose(1, 2, 0))
    vertical = mask & (np.abs(exact[..., 2]) < 0.5)
    assert vertical.sum() > 100
    return float(np.median(angular_error_deg(decoded[vertical], exact[vertical])))


@pytest.mark.parametrize("frame", ["world", "camera"])
def test_flip_with_mirror_normals_equals_rendering_the_mirrored_room(frame):
    room = generate_room(11)
    h, w = 48, 96
    r = render(room, h, w, noise=0)
    m = render(_mirror_room(room), h, w, noise=0)
    flipped_labels = r.semantics[:, ::-1]
    assert (flipped_labels == m.semantics).mean() > 0.995
    same = (flipped_labels == m.semantics) & m.valid
    np.testing.assert_allclose(r.depth[:, ::-1][same], m.depth[same], rtol=1e-4, atol=1e-4)

    data = {"normals": _torch_normals(r.normals, r.valid)}
    labels = {"semantics": torch.from_numpy(r.semantics.astype(np.int64))[None]}
    out, out_labels = apply_augmentation(data, labels, Augmentation(flip=True), mirror_normals=True, normals_frame=frame)  # fmt: skip
    assert torch.equal(
        out_labels["semantics"][0], torch.from_numpy(flipped_labels.astype(np.int64))
    )
    assert _median_error(out["normals"], m.normals, same) < 0.5
    # Without mirroring the vectors (the reference), walls facing +-y come out wrong.
    plain, _ = apply_augmentation(data, labels, Augmentation(flip=True))
    side_walls = same & (np.abs(m.normals[..., 1]) > 0.9)
    assert _median_error(plain["normals"], m.normals, side_walls) > 170


def test_roll_in_camera_frame_equals_turning_the_camera():
    room = generate_room(12)
    h, w, shift = 48, 96, 17
    r = render(room, h, w, noise=0)
    turned = render(room, h, w, yaw=2 * np.pi * shift / w, noise=0)
    rolled_labels = np.roll(r.semantics, shift, axis=1)
    assert (rolled_labels == turned.semantics).mean() > 0.995
    same = (rolled_labels == turned.semantics) & turned.valid
    np.testing.assert_allclose(np.roll(r.depth, shift, 1)[same], turned.depth[same], rtol=1e-4, atol=1e-4)  # fmt: skip
    rgb_diff = np.abs(np.roll(r.rgb, shift, 1)[same].astype(int) - turned.rgb[same])
    assert rgb_diff.max() <= 2 and rgb_diff.mean() < 0.01

    data = {"normals": _torch_normals(r.normals, r.valid)}
    labels = {"semantics": torch.from_numpy(r.semantics.astype(np.int64))[None]}
    aug = Augmentation(shift=shift)
    cam, _ = apply_augmentation(data, labels, aug, mirror_normals=True, normals_frame="camera")
    assert _median_error(cam["normals"], turned.normals, same) < 1.0
    # World-frame normals do not change when the camera turns: only the pixels move.
    world, _ = apply_augmentation(data, labels, aug, mirror_normals=True, normals_frame="world")
    assert torch.equal(world["normals"], torch.roll(data["normals"], shift, -1))


def test_normals_from_depth_match_the_exact_normals():
    r = render_room(21, 128, 256, holes=0.01)
    normals, ok = normals_from_depth(r.depth, r.valid)
    assert not ok[~r.valid].any() and ok[r.valid].mean() > 0.99
    err = angular_error_deg(normals[ok], r.normals[ok])
    assert np.median(err) < 0.1 and (err < 5).mean() > 0.9  # errors sit on object edges
    # Quantised like Stanford2D3DS (1/512 m): still close.
    quantised = np.rint(r.depth * 512) / 512
    normals_q, ok_q = normals_from_depth(quantised, r.valid)
    assert np.median(angular_error_deg(normals_q[ok_q], r.normals[ok_q])) < 3.0
    # Depth units do not matter.
    normals_mm, _ = normals_from_depth(r.depth * 1000.0, r.valid)
    assert np.median(angular_error_deg(normals_mm[ok], normals[ok])) < 1e-3


def test_normals_from_depth_wrap_across_the_seam_and_skip_invalid_depth():
    h, w = 16, 32
    dirs = pixel_directions(h, w)
    # A plane x = -2 behind the camera, valid only in the two columns at the seam.
    depth = np.where(dirs[..., 0] < -0.1, -2.0 / np.minimum(dirs[..., 0], -1e-9), 0.0)
    strip = np.zeros((h, w), bool)
    strip[:, [0, w - 1]] = True
    depth = np.where(strip, depth, 0.0)
    normals, ok = normals_from_depth(depth, smooth=0)
    rows = slice(2, h - 2)
    assert ok[rows][:, [0, w - 1]].all() and not ok[:, 1 : w - 1].any()
    np.testing.assert_allclose(normals[rows][:, [0, w - 1]], np.broadcast_to([1.0, 0, 0], (h - 4, 2, 3)), atol=1e-6)  # fmt: skip
    # A lone valid pixel has no tangent, and NaN/negative depth count as invalid.
    lone = np.zeros((h, w))
    lone[5, 5] = 3.0
    lone[8, 8] = np.nan
    lone[9, 9] = -1.0
    assert not normals_from_depth(lone)[1].any()


def test_normals_encoding_round_trip():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(4, 5, 3))
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    valid = np.ones((4, 5), bool)
    valid[0, 0] = False
    encoded = encode_normals(vectors, valid)
    assert encoded.dtype == np.uint8 and tuple(encoded[0, 0]) == (128, 128, 128)
    decoded, ok = decode_normals(encoded)
    assert (ok == valid).all()
    assert angular_error_deg(decoded[valid], vectors[valid]).max() < 1.0
