"""Losses: hand-computed Jaccard / CE values and gradients, schedule, combination rules."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_optimizer import JaccardLoss

from panosamic.train.losses import (
    LossSchedule,
    PanoSAMicLoss,
    reference_jaccard_loss,
    stack_batch,
    weighted_cross_entropy,
)

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def _case(num_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """One image of 1 x 3 pixels: labels [0, 1, ignore]."""
    rows = [[LN3, -LN3, 5.0], [-LN3, LN3, -7.0]] + [[0.3, -0.2, 1.0]] * (num_classes - 2)
    logits = torch.tensor(rows, dtype=torch.float64).reshape(1, num_classes, 1, 3)
    labels = torch.tensor([[[0, 1, -1]]])
    return logits.requires_grad_(True), labels


def test_jaccard_hand_computed_value_and_gradient() -> None:
    logits, labels = _case()
    loss = reference_jaccard_loss(logits, labels)
    # class 0: p = [0.75, 0.25, 0.5 (ignored: logit forced to 0)], y = [1, 0, 0]
    # I = 0.75, S = sum p + sum y = 1.5 + 1 = 2.5, S - I = 1.75 -> loss 1 - 3/7 = 4/7 (class 1 alike)
    assert loss.item() == pytest.approx(4 / 7, abs=1e-12)
    loss.backward()
    grad = logits.grad[0, :, 0]
    # d/dz of pixel 0, class 0 (y = 1): -(1 / D) / K * p (1 - p) with D = 1.75, K = 2
    assert grad[0, 0].item() == pytest.approx(-(1 / 1.75) / 2 * 0.1875, abs=1e-12)
    # pixel 1, class 0 (y = 0): +(I / D^2) / K * p (1 - p)
    assert grad[0, 1].item() == pytest.approx(0.75 / 1.75**2 / 2 * 0.1875, abs=1e-12)
    # the ignored pixel's logits get no gradient
    assert torch.all(grad[:, 2] == 0)


def test_ignored_pixels_add_half_to_every_union() -> None:
    logits = torch.zeros(1, 2, 1, 3)
    with_ignored = reference_jaccard_loss(logits, torch.tensor([[[0, 1, -1]]]))
    # p = 0.5 everywhere: per class I = 0.5, S - I = 1.5 + 1 - 0.5 = 2 -> 0.75
    assert with_ignored.item() == pytest.approx(0.75)
    without = reference_jaccard_loss(logits[..., :2], torch.tensor([[[0, 1]]]))
    # without the ignored pixel: S - I = 1 + 1 - 0.5 = 1.5 -> 1 - 1/3
    assert without.item() == pytest.approx(2 / 3)


def test_absent_class_counts_zero_but_stays_in_the_mean() -> None:
    logits, labels = _case(num_classes=3)
    loss = reference_jaccard_loss(logits, labels)
    assert loss.item() == pytest.approx((4 / 7 + 4 / 7 + 0) / 3, abs=1e-12)
    loss.backward()
    assert torch.all(logits.grad[0, 2] == 0)


def test_jaccard_equals_pytorch_optimizer_on_masked_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 5, 6, 12, generator=g, dtype=torch.float64)).requires_grad_(True)
    labels = torch.randint(-1, 4, (2, 6, 12), generator=g)  # class 4 absent, ~1/5 ignored
    ours = reference_jaccard_loss(logits, labels)
    (g_ours,) = torch.autograd.grad(ours, logits)

    valid = (labels != -1).unsqueeze(1)
    masked = logits * valid
    onehot = torch.nn.functional.one_hot(labels.clamp_min(0), 5).permute(0, 3, 1, 2) * valid
    lib = JaccardLoss(mode="multilabel", from_logits=True, log_loss=False, label_smooth=0)
    theirs = lib(masked, onehot)
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-12)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)


def test_cross_entropy_weights_cancel_scale_and_ignore_pixels() -> None:
    logits, labels = _case()
    weights = torch.tensor([1.0, 3.0])
    loss = weighted_cross_entropy(logits, labels, weights)
    log_p = torch.log_softmax(logits.detach()[0, :, 0], dim=0)
    expected = -(1 * log_p[0, 0] + 3 * log_p[1, 1]) / (1 + 3)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
    assert weighted_cross_entropy(logits, labels, 10 * weights).item() == pytest.approx(loss.item())


def test_cross_entropy_all_ignored_is_zero_with_zero_gradient() -> None:
    logits = torch.randn(1, 3, 2, 4, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.full((1, 2, 4), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.1, 0.75), (0.2, 0.5), (0.45, 1e-6), (0.7, 0.29), (0.85, 0.80), (0.95, 1.0)],
)
def test_scheduled_ce_weight_at_documented_fractions(fraction: float, expected: float) -> None:
    schedule = LossSchedule(total_steps=10_000)
    assert schedule.ce_weight(round(fraction * 10_000)) == pytest.approx(expected, abs=0.006)


def test_scheduled_loss_weights_terms_and_reuses_them_for_validation() -> None:
    loss_fn = PanoSAMicLoss(
        {"CrossEntropyLoss": 1, "JaccardLoss": 1, "ScheduledLoss": {}}, total_steps=100
    )
    logits, labels = _case()
    ce = weighted_cross_entropy(logits, labels).item()
    jac = reference_jaccard_loss(logits, labels).item()
    assert loss_fn(logits, labels, step=20).item() == pytest.approx(0.5 * ce + 0.5 * jac, abs=1e-6)
    assert loss_fn(logits, labels).item() == pytest.approx(0.5 * ce + 0.5 * jac, abs=1e-6)
    assert loss_fn(logits, labels, step=10).item() == pytest.approx(
        0.75 * ce + 0.25 * jac, abs=1e-6
    )


def test_plain_sum_and_multipliers_without_schedule() -> None:
    logits, labels = _case()
    ce = weighted_cross_entropy(logits, labels).item()
    jac = reference_jaccard_loss(logits, labels).item()
    loss_fn = PanoSAMicLoss({"CrossEntropyLoss": 2, "JaccardLoss": 0.5})
    assert loss_fn(logits, labels, step=1).item() == pytest.approx(2 * ce + 0.5 * jac, abs=1e-9)


def test_zero_first_term_lets_the_next_take_w1() -> None:
    # labels absent from every class -> Jaccard 0; all-ignored CE -> 0: then nothing is left
    logits = torch.randn(1, 2, 1, 3, requires_grad=True)
    labels = torch.full((1, 1, 3), -1)
    loss_fn = PanoSAMicLoss(
        {"CrossEntropyLoss": 1, "JaccardLoss": 1, "ScheduledLoss": {}}, total_steps=100
    )
    zero = loss_fn(logits, labels, step=10)
    assert zero.item() == 0.0
    zero.backward()
    assert torch.all(logits.grad == 0)
    # a zero CE multiplier: Jaccard becomes the first term and gets w1 = 0.75 at 0.1 T
    logits, labels = _case()
    jac = reference_jaccard_loss(logits, labels).item()
    loss_fn = PanoSAMicLoss(
        {"CrossEntropyLoss": 1, "JaccardLoss": 1, "ScheduledLoss": {}}, total_steps=100
    )
    loss_fn.multipliers["CrossEntropyLoss"] = 0.0
    assert loss_fn(logits, labels, step=10).item() == pytest.approx(0.75 * jac, abs=1e-6)


def test_invalid_loss_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="ScheduledLoss needs"):
        PanoSAMicLoss({"JaccardLoss": 1, "ScheduledLoss": {}}, total_steps=10)
    with pytest.raises(ValueError, match="ScheduledLoss needs"):
        PanoSAMicLoss(
            {"CrossEntropyLoss": 1, "DiceLoss": 1, "JaccardLoss": 1, "ScheduledLoss": {}},
            total_steps=10,
        )
    with pytest.raises(ValueError, match="unknown loss config keys"):
        PanoSAMicLoss({"Jacard": 1})
    with pytest.raises(ValueError, match="enables no term"):
        PanoSAMicLoss({})


def test_infinite_class_weights_become_zero() -> None:
    logits, labels = _case(num_classes=3)
    loss_fn = PanoSAMicLoss(
        {"CrossEntropyLoss": 1}, class_weights=torch.tensor([1.0, 1.0, math.inf])
    )
    assert math.isfinite(loss_fn(logits, labels, step=1).item())


def test_stack_batch_shapes_and_errors() -> None:
    outputs = [{"sem_preds": torch.zeros(3, 4, 8)} for _ in range(2)]
    labels = [{"semantics": torch.zeros(1, 4, 8, dtype=torch.long)} for _ in range(2)]
    logits, target = stack_batch(outputs, labels)
    assert logits.shape == (2, 3, 4, 8) and target.shape == (2, 4, 8)
    labels[1] = {"semantics": torch.zeros(1, 2, 4, dtype=torch.long)}
    with pytest.raises(ValueError, match="share one size"):
        stack_batch(outputs, labels)
