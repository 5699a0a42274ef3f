"""Learning-rate scaling, Ranger21's arguments and its warm-up / warm-down curve."""

from __future__ import annotations

import pytest
import torch

from panosamic.train.optim import (
    build_optimizer,
    current_lr,
    plan_learning_rate,
    radam_lr,
    ranger21_lr,
    scaled_max_lr,
)

STANFORD_LR = {"start_lr": 1e-5, "max_lr": 5e-4, "warm_up_ratio": 0.1, "wind_down_ratio": 10}


def test_lr_scaling_by_total_batch_over_four() -> None:
    assert scaled_max_lr(5e-4, 1) == pytest.approx(1.25e-4)  # the README command
    assert scaled_max_lr(5e-4, 8) == pytest.approx(1e-3)  # paper batch 8, Stanford
    assert scaled_max_lr(1e-3, 8) == pytest.approx(2e-3)  # paper batch 8, Matterport
    assert scaled_max_lr(5e-4, 8, "none") == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="lr scaling"):
        scaled_max_lr(5e-4, 8, "sqrt")


def test_plan_counts_steps_like_the_reference() -> None:
    plan = plan_learning_rate(
        "Ranger21", STANFORD_LR, steps_per_epoch=100, epochs=50, total_batch=2
    )
    assert plan.max_lr_eff == pytest.approx(2.5e-4)
    assert plan.warm_up_steps == 10  # int(0.1 L)
    assert plan.warm_down_steps == 1000  # int(10 L): the last 10 epochs
    assert plan.total_steps == 5000
    with pytest.raises(ValueError, match="smaller than one"):
        plan_learning_rate("Ranger21", STANFORD_LR, steps_per_epoch=0, epochs=1, total_batch=1)
    with pytest.raises(ValueError, match="unknown lr_scheduler keys"):
        plan_learning_rate("Ranger21", {"maxlr": 1}, steps_per_epoch=1, epochs=1, total_batch=1)


def test_ranger21_gets_the_reference_arguments() -> None:
    plan = plan_learning_rate("Ranger21", STANFORD_LR, steps_per_epoch=20, epochs=30, total_batch=8)
    params = [
        torch.nn.Parameter(torch.ones(3)),
        torch.nn.Parameter(torch.ones(2), requires_grad=False),
    ]
    opt, sched = build_optimizer(params, plan)
    assert type(opt).__name__ == "Ranger21" and sched is None
    assert len(opt.param_groups[0]["params"]) == 1  # frozen parameters are left out
    assert opt.num_warm_up_iterations == 2
    assert opt.num_warm_down_iterations == 200
    assert opt.min_lr == pytest.approx(1e-3 * 1e-4)
    assert opt.starting_lr == pytest.approx(1e-3)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(1e-4)
    assert opt.lookahead_merge_time == 5


def test_ranger21_curve_hand_values() -> None:
    lr_cfg = {**STANFORD_LR, "wind_down_ratio": 1}
    plan = plan_learning_rate("Ranger21", lr_cfg, steps_per_epoch=20, epochs=3, total_batch=8)
    peak, floor = 1e-3, 1e-7
    assert ranger21_lr(plan, 1) == pytest.approx(peak / 2)  # warm-up: k / W_up, W_up = 2
    assert ranger21_lr(plan, 2) == pytest.approx(peak)
    assert ranger21_lr(plan, 39) == pytest.approx(peak)
    # warm-down from k = N - W_dn = 40 over 21 increments to the floor at the last step
    assert ranger21_lr(plan, 40) == pytest.approx(peak - (peak - floor) / 21)
    assert ranger21_lr(plan, 50) == pytest.approx(peak - (peak - floor) * 11 / 21)
    assert ranger21_lr(plan, 60) == pytest.approx(floor)


def test_ranger21_curve_matches_the_optimizer() -> None:
    lr_cfg = {**STANFORD_LR, "wind_down_ratio": 1}
    plan = plan_learning_rate("Ranger21", lr_cfg, steps_per_epoch=20, epochs=3, total_batch=4)
    param = torch.nn.Parameter(torch.randn(4, 4))
    opt, sched = build_optimizer([param], plan)
    seen = []
    for k in range(1, plan.total_steps + 1):
        param.grad = torch.randn(4, 4)
        opt.step()
        seen.append(current_lr(opt, sched))
        assert seen[-1] == pytest.approx(ranger21_lr(plan, k), rel=1e-12), k
    assert max(seen) == pytest.approx(5e-4) and seen[-1] == pytest.approx(5e-8)


def test_radam_alternative_uses_absolute_lambda() -> None:
    lr_cfg = {"start_lr": 1e-5, "max_lr": 1e-3, "warm_up_ratio": 0.5, "wind_down_ratio": 6}
    plan = plan_learning_rate("RAdam", lr_cfg, steps_per_epoch=4, epochs=2, total_batch=4)
    assert (plan.warm_up_steps, plan.warm_down_steps, plan.total_steps) == (2, 24, 8)
    param = torch.nn.Parameter(torch.zeros(2))
    opt, sched = build_optimizer([param], plan)
    assert type(opt).__name__ == "RAdam" and sched is not None
    assert current_lr(opt, sched) == pytest.approx(1e-5)  # k = 0
    param.grad = torch.ones(2)
    opt.step()
    sched.step()
    assert current_lr(opt, sched) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert radam_lr(plan, 5) == pytest.approx(1e-3)
    wind = plan_learning_rate(
        "RAdam",
        {**lr_cfg, "wind_down_ratio": 1, "intermediate_lr": 1e-4},
        steps_per_epoch=4,
        epochs=2,
        total_batch=4,
    )
    assert radam_lr(wind, 4) == pytest.approx(1e-4)  # intermediate at the wind-down start
    assert radam_lr(wind, 6) == pytest.approx(1e-4 * (1 - 2 / 4))
    with pytest.raises(ValueError, match="overlaps"):
        radam_lr(
            plan_learning_rate(
                "RAdam",
                {**lr_cfg, "wind_down_ratio": 0.25},
                steps_per_epoch=4,
                epochs=2,
                total_batch=4,
            ),
            1,
        )


def test_int8_is_an_inference_precision(tmp_path):
    from panosamic.train.options import REQUIRED_KEYS, TrainOptions

    required = {key: str(tmp_path) for key in REQUIRED_KEYS}
    with pytest.raises(ValueError, match="int8 is for inference"):
        TrainOptions(**required, precision="int8")
    assert TrainOptions(**required, precision="bf16").precision == "bf16"
