"""`panosamic bench` runs end to end (tiny encoder; real sizes belong to benchmarks, not tests)."""

from __future__ import annotations

import json

from panosamic.cli import main


def test_bench_forward_reports_time_stages_memory_and_agreement(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--tiny",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--height",
            "64",
            "--precision",
            "bf16",
            "--compare-fp32",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "median forward" in text and "peak RSS" in text and "reference" not in text
    result = json.loads(out.read_text())
    assert len(result["seconds"]) == 2 and result["median_seconds"] > 0
    assert {"preprocess", "encoder", "fusion", "decoder", "postprocess"} <= set(result["stages"])
    assert sum(result["stages"].values()) <= sum(result["seconds"]) / 2 * 1.05
    assert 0.5 < result["agreement_with_fp32"] <= 1.0
    assert result["peak_rss_gb"] >= result["rss_after_build_gb"] > 0


def test_bench_training_step_with_checkpointing(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert (
        main(
            [
                "bench",
                "--tiny",
                "--train-step",
                "--checkpointing",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--height",
                "64",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["config"]["checkpointing"] and "backward" in result["stages"]


def test_bench_rejects_bad_counts(capsys):
    assert main(["bench", "--tiny", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
