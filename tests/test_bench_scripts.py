"""The performance scripts in ``benchmarks/`` run (tiny encoder, CPU): the GPU table's dry run,
the int8 layer study, and the side-by-side script's refusal of a folder that is no checkout."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from panosamic.model.int8 import int8_available

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_dry_run_prints_every_case(tmp_path, capsys):
    bench_gpu = load_script("bench_gpu")
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--dry-run", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dry_run"] and result["device"] == "cpu"
    cases = {(c["precision"], c["batch"]): c for c in result["cases"]}
    assert set(cases) == {(p, b) for p in bench_gpu.PRECISIONS for b in (1, 4)}
    for case in cases.values():
        assert case["error"] is None and case["ms_per_panorama"] > 0
        assert case["peak_allocated_gb"] is None  # no CUDA memory on the CPU
    text = capsys.readouterr().out
    assert "ms / panorama" in text and "bf16+compile" in text


def test_gpu_benchmark_refuses_unknown_precisions():
    with pytest.raises(SystemExit, match="unknown precisions"):
        load_script("bench_gpu").main(["--dry-run", "--precisions", "fp32,int4"])


@pytest.mark.skipif(not int8_available(), reason="no oneDNN int8 kernels here")
def test_int8_layer_study_reports_agreement_per_selection():
    study = load_script("bench_int8_layers")
    assert study.parse_selection("qkv,proj:0-2,5").dense_blocks == (0, 1, 2, 5)
    assert study.parse_selection("all").kinds == ("qkv", "proj", "lin1", "lin2")
    cfg = study.BenchConfig(height=64, tiny=True)
    result = study.measure(cfg, extra=["qkv"], only=True, progress=False)
    rows = result["selections"]
    assert list(rows) == ["fp32", "bf16", "qkv"]
    assert rows["fp32"]["agreement"] == 1.0
    assert all(0.9 < row["agreement"] <= 1.0 for row in rows.values())


def test_side_by_side_needs_a_reference_checkout(tmp_path):
    bench_reference = load_script("bench_reference")
    with pytest.raises(SystemExit, match="not a checkout of the reference"):
        bench_reference.main(["--reference", str(tmp_path)])
