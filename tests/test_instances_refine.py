"""refine_semantic_with_instances: majority vote over the original argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panosamic.model.instance_semantic_fusion import refine_semantic_with_instances


def logits_of(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(H, W) labels -> (C, H, W) logits whose argmax is ``labels``."""
    return F.one_hot(labels, num_classes).permute(2, 0, 1).float() * 3 - 1


def mask(h: int, w: int, rows: slice, cols: slice) -> dict:
    seg = torch.zeros(h, w, dtype=torch.bool)
    seg[rows, cols] = True
    return {
        "segmentation": seg,
        "area": int(seg.sum()),
        "predicted_iou": 0.9,
        "stability_score": 0.95,
    }


def loop_refine(labels: torch.Tensor, masks: list[torch.Tensor], num_classes: int) -> torch.Tensor:
    """The reference's algorithm, pixel by pixel."""
    out = labels.clone()
    for m in masks:
        if not m.any():
            continue
        counts = torch.bincount(labels[m], minlength=num_classes)
        out[m] = int(torch.argmax(counts))
    return out


def test_majority_vote_ties_to_the_lowest_class_and_outside_pixels_keep_theirs():
    labels = torch.tensor([[3, 3, 1, 1, 2, 2], [0, 0, 0, 4, 4, 4]])
    sem = logits_of(labels, 5)
    tie = mask(2, 6, slice(0, 1), slice(0, 4))  # two 3s, two 1s -> 1
    out = refine_semantic_with_instances(sem, [tie])
    assert out.shape == sem.shape and out.dtype == torch.float32
    assert set(out.unique().tolist()) == {0.0, 1.0} and torch.equal(out.sum(0), torch.ones(2, 6))
    refined = out.argmax(0)
    assert refined[0, :4].tolist() == [1, 1, 1, 1]
    assert torch.equal(refined[0, 4:], labels[0, 4:]) and torch.equal(refined[1], labels[1])


def test_later_smaller_masks_overwrite_and_votes_read_the_original_map():
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[1:3, 1:3] = 2  # 4 pixels of class 2 in a 16-pixel mask of class 0
    big = mask(4, 4, slice(0, 4), slice(0, 4))
    small = mask(4, 4, slice(1, 3), slice(1, 4))  # 4 of class 2, 2 of class 0 -> 2
    refined = refine_semantic_with_instances(logits_of(labels, 3), [big, small]).argmax(0)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[1:3, 1:4] = 2  # the small mask wins where it overlaps; it voted on the original map
    assert torch.equal(refined, expected)
    # the other order: the big mask (class 0) is last and covers everything
    assert (refine_semantic_with_instances(logits_of(labels, 3), [small, big]).argmax(0) == 0).all()


def test_matches_the_pixel_loop_on_random_data():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        sem = torch.randn(6, 20, 40, generator=g)
        masks = [torch.rand(20, 40, generator=g) < p for p in (0.5, 0.2, 0.05, 0.0)]
        out = refine_semantic_with_instances(sem, [{"segmentation": m} for m in masks])
        assert torch.equal(out.argmax(0), loop_refine(sem.argmax(0), masks, 6))


def test_accepted_inputs():
    labels = torch.tensor([[0, 1, 1], [2, 2, 2]])
    sem = logits_of(labels, 3)
    m = mask(2, 3, slice(0, 2), slice(0, 2))  # 0, 1, 2, 2 -> 2
    assert refine_semantic_with_instances(sem, []) is sem
    batched = refine_semantic_with_instances(sem[None], [m])
    assert batched.shape == (1, 3, 2, 3)
    assert torch.equal(batched[0], refine_semantic_with_instances(sem, [m]))
    as_numpy = {"segmentation": m["segmentation"].numpy().astype(np.uint8)}
    assert torch.equal(
        refine_semantic_with_instances(sem, [as_numpy]), refine_semantic_with_instances(sem, [m])
    )
    bare = refine_semantic_with_instances(sem, [m["segmentation"]])  # a plain mask tensor
    assert torch.equal(bare, refine_semantic_with_instances(sem, [m]))
    skipped = refine_semantic_with_instances(sem, [{"segmentation": None}])  # not a tensor
    assert torch.equal(skipped.argmax(0), labels)


def test_bad_inputs_are_explained():
    sem = torch.randn(3, 4, 8)
    with pytest.raises(ValueError, match="does not match"):
        refine_semantic_with_instances(sem, [torch.ones(4, 4, dtype=torch.bool)])
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        refine_semantic_with_instances(sem[None].expand(2, -1, -1, -1), [torch.ones(4, 8)])
