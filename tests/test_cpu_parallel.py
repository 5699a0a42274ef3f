"""Image-parallel CPU path: same numbers as the plain path, sensible worker plans."""

from __future__ import annotations

import pytest
import torch

from panosamic.utils import cpu_parallel
from panosamic.utils.cpu_parallel import plan_workers
from panosamic.weights import load_panosamic
from tests.conftest import golden_inputs, write_hub_layout


@pytest.mark.parametrize(
    ("items", "threads", "workers"),
    [(6, 2, 2), (3, 2, 1), (1, 8, 1), (6, 16, 2), (6, 6, 6), (4, 3, 1), (2, 4, 2), (12, 8, 4)],
)
def test_plan_workers(items, threads, workers):
    assert plan_workers(items, threads) == workers


def test_split_path_gives_the_same_logits(tmp_path, monkeypatch, two_threads):
    hub, sam, config = write_hub_layout(tmp_path, "tiny-dual")
    model = load_panosamic(
        hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam, semantic_only=True
    )
    batch = [golden_inputs("tiny-dual")]
    calls = []
    real = cpu_parallel.run_split
    monkeypatch.setattr(
        "panosamic.model.image_encoder.run_split", lambda *a: calls.append(a[:2]) or real(*a)
    )
    with torch.inference_mode():
        split = model(batch)[0]["sem_preds"]
        monkeypatch.setenv(cpu_parallel.ENV_SWITCH, "0")
        plain = model(batch)[0]["sem_preds"]
    assert calls == [(6, 2)]  # 2 views x 3 modalities over 2 workers, once
    assert torch.allclose(split, plain, atol=1e-5, rtol=0)
    assert torch.get_num_threads() == 2


def _record_threads(job: int) -> tuple[int, int, bool]:
    return job, torch.get_num_threads(), torch.is_inference_mode_enabled()


def test_map_parallel_keeps_order_modes_and_thread_count(monkeypatch, two_threads):
    with torch.inference_mode():
        results = cpu_parallel.map_parallel(_record_threads, range(5))
    assert torch.get_num_threads() == 2
    monkeypatch.setenv(cpu_parallel.ENV_SWITCH, "0")
    serial = cpu_parallel.map_parallel(_record_threads, range(3))
    # an odd number of jobs, each worker with one of the two threads, in the caller's mode
    assert results == [(j, 1, True) for j in range(5)]
    assert serial == [(j, 2, False) for j in range(3)]


def test_map_parallel_raises_a_worker_error_after_all_workers_stop(two_threads):
    def fail_on_two(job: int) -> int:
        if job == 2:
            raise ValueError("job 2 failed")
        return job

    with pytest.raises(ValueError, match="job 2 failed"):
        cpu_parallel.map_parallel(fail_on_two, range(4))
    assert torch.get_num_threads() == 2
