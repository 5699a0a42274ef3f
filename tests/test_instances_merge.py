"""Cross-modality greedy merge and dual-view fusion: properties and the reference's loops."""

from __future__ import annotations

import torch

from panosamic.instances.config import AMGConfig
from panosamic.instances.masks import MaskSet, count_pixels, pairwise_intersections, pairwise_iou
from panosamic.instances.merge import merge_modalities, merge_views, unroll_shifted_view
from tests.instance_models import same_masks
from tests.instances_reference import (
    fuse_dual_view_reference,
    merge_masks_greedy_reference,
    pixel_iou,
)

H, W = 24, 48


def random_masks(n: int, seed: int, ties: bool = True) -> MaskSet:
    """Rectangles and their jittered copies (many overlaps above 0.7), some equal scores."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, H, W, dtype=torch.bool)
    for i in range(n):
        if i % 3 and i > 0:  # a near-copy of an earlier mask
            base = masks[int(torch.randint(0, i, (1,), generator=g))].clone()
            flip = torch.rand(H, W, generator=g) < 0.05
            masks[i] = base ^ flip
        else:
            y0 = int(torch.randint(0, H - 4, (1,), generator=g))
            x0 = int(torch.randint(0, W - 4, (1,), generator=g))
            h = int(torch.randint(3, H - y0 + 1, (1,), generator=g))
            w = int(torch.randint(3, W - x0 + 1, (1,), generator=g))
            masks[i, y0 : y0 + h, x0 : x0 + w] = True
    iou = torch.rand(n, generator=g) * 0.2 + 0.8
    stability = torch.rand(n, generator=g) * 0.1 + 0.9
    if ties:  # equal quality and equal areas exercise the stable sorts
        iou[1::4] = iou[0]
        stability[1::4] = stability[0]
    return MaskSet(masks, iou.float(), stability.float())


def test_pairwise_iou_matches_pixel_counts():
    a = random_masks(7, 0).masks
    b = random_masks(5, 1).masks
    inter = pairwise_intersections(a, b)
    iou = pairwise_iou(a, b)
    assert torch.equal(count_pixels(a), a.flatten(1).sum(1))
    for i in range(len(a)):
        for j in range(len(b)):
            assert inter[i, j] == int((a[i] & b[j]).sum())
            assert iou[i, j] == pixel_iou(a[i], b[j])
    empty = torch.zeros(2, H, W, dtype=torch.bool)
    assert torch.equal(pairwise_iou(empty, empty), torch.zeros(2, 2, dtype=torch.float64))


def test_merge_modalities_matches_reference_and_keeps_no_duplicates():
    for seed in range(4):
        masks = random_masks(30, seed)
        merged = merge_modalities(masks, 0.7)
        assert same_masks(merged.to_dicts(), merge_masks_greedy_reference(masks.to_dicts(), 0.7))
        assert 0 < len(merged) < len(masks)  # the near-copies were merged
        iou = pairwise_iou(merged.masks, merged.masks)
        assert not (iou.triu(diagonal=1) > 0.7).any()
        areas = merged.areas.tolist()
        assert areas == sorted(areas, reverse=True)


def test_unroll_moves_a_seam_crossing_mask_back():
    """A region across the 0/360 degree seam lies in the middle of the shifted view."""
    unshifted = torch.zeros(H, W, dtype=torch.bool)
    unshifted[5:12, W - 6 :] = True  # the right edge ...
    unshifted[5:12, :4] = True  # ... continues at the left edge
    shifted = torch.roll(unshifted, W // 2, dims=-1)  # what the shifted view sees
    assert shifted[5:12, W // 2 - 6 : W // 2 + 4].all() and shifted.sum() == unshifted.sum()
    back = unroll_shifted_view(MaskSet(shifted[None], torch.ones(1), torch.ones(1)))
    assert torch.equal(back.masks[0], unshifted)


def test_dual_view_fusion_at_the_seam():
    seam = torch.zeros(H, W, dtype=torch.bool)
    seam[5:12, W - 6 :] = True
    seam[5:12, :4] = True
    half = seam.clone()
    half[:, :4] = False  # the unshifted view only found the part left of the seam
    other = torch.zeros(H, W, dtype=torch.bool)
    other[15:20, 10:20] = True
    shifted_seam = torch.roll(seam, W // 2, dims=-1)
    shifted_other = torch.roll(other, W // 2, dims=-1)
    amg = AMGConfig()
    a = MaskSet(torch.stack([other, half]), torch.tensor([0.9, 0.90]), torch.tensor([0.95, 0.95]))
    b = MaskSet(
        torch.stack([shifted_seam, shifted_other]),
        torch.tensor([0.95, 0.5]),
        torch.tensor([0.97, 0.99]),
    )
    fused = merge_views(a, b, amg)
    # the whole seam region (better quality, IoU 42/70 = 0.6 <= 0.7 with the half): appended;
    # the other region duplicates A's with a worse quality: A's stays
    assert len(fused) == 3
    assert torch.equal(fused.masks[0], seam) and fused.iou[0] == 0.95
    assert torch.equal(fused.masks[1], other) and fused.iou[1] == 0.9  # A's, area 50
    assert torch.equal(fused.masks[2], half)  # area 42
    reference = fuse_dual_view_reference(a.to_dicts(), b.to_dicts(), amg)
    assert same_masks(fused.to_dicts(), reference)

    # a B mask matching above the threshold with higher quality replaces A's mask in place
    near = seam.clone()
    near[5, :4] = False  # IoU 63 / 70 = 0.9 with the full seam region
    a2 = MaskSet(torch.stack([near, other]), torch.tensor([0.80, 0.9]), torch.tensor([0.9, 0.9]))
    fused2 = merge_views(a2, b.select([0]), amg)
    assert len(fused2) == 2 and torch.equal(fused2.masks[0], seam) and fused2.iou[0] == 0.95


def test_dual_view_fusion_matches_reference_loops():
    for seed in range(4):
        a = random_masks(12, seed)
        b = random_masks(12, seed + 10)
        overlapping = torch.roll(b.masks | a.masks.roll(1, 0), W // 2, dims=-1)
        b = MaskSet(overlapping, b.iou, b.stability)
        for amg in (AMGConfig(), AMGConfig(dual_view_quality_margin=0.2)):
            fused = merge_views(a, b, amg)
            reference = fuse_dual_view_reference(a.to_dicts(), b.to_dicts(), amg)
            assert same_masks(fused.to_dicts(), reference)
            areas = fused.areas.tolist()
            assert areas == sorted(areas, reverse=True)
    empty = MaskSet.empty((H, W))
    a = random_masks(3, 0)
    assert same_masks(
        merge_views(empty, a, AMGConfig()).to_dicts(), unroll_shifted_view(a).to_dicts()
    )
    assert same_masks(merge_views(a, empty, AMGConfig()).to_dicts(), a.to_dicts())
