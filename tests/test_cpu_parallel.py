"""Image-parallel CPU path: same numbers as the plain path, sensible worker plans."""

from __future__ import annotations

import pytest
import torch

from panosamic.model import cpu_parallel
from panosamic.model.cpu_parallel import plan_workers
from panosamic.weights import load_panosamic
from tests.conftest import golden_inputs, write_hub_layout


@pytest.mark.parametrize(
    ("items", "threads", "workers"),
    [(6, 2, 2), (3, 2, 1), (1, 8, 1), (6, 16, 2), (6, 6, 6), (4, 3, 1), (2, 4, 2), (12, 8, 4)],
)
def test_plan_workers(items, threads, workers):
    assert plan_workers(items, threads) == workers


def test_split_path_gives_the_same_logits(tmp_path, monkeypatch):
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
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            split = model(batch)[0]["sem_preds"]
            monkeypatch.setenv(cpu_parallel.ENV_SWITCH, "0")
            plain = model(batch)[0]["sem_preds"]
    finally:
        torch.set_num_threads(threads)
    assert calls == [(6, 2)]  # 2 views x 3 modalities over 2 workers, once
    assert torch.allclose(split, plain, atol=1e-5, rtol=0)
    assert torch.get_num_threads() == threads
