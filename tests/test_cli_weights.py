"""`panosamic weights`: the published table and clear offline failures."""

from __future__ import annotations

from panosamic.cli import main
from tests.conftest import set_hub_offline


def test_list_prints_all_variants_with_paper_scores(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    rows = [
        line for line in out.splitlines() if line.startswith(("stanford2d3ds-", "matterport3d-"))
    ]
    assert len(rows) == 17
    assert any(r.split()[:3] == ["stanford2d3ds-vith-rgbdn-fold2", "61.57", "74.04"] for r in rows)
    assert any(r.split() == ["matterport3d-vith-rgbd", "48.43", "-"] for r in rows)


def test_hub_download_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    set_hub_offline(monkeypatch, True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code = main(["weights", "hub", "matterport3d-vith-rgb", "--local-dir", str(tmp_path / "out")])
    assert code == 2
    assert (
        "the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE is set)"
        in capsys.readouterr().err
    )


def test_hub_download_unknown_variant(tmp_path, capsys):
    assert main(["weights", "hub", "nope", "--local-dir", str(tmp_path)]) == 2
    assert "unknown variants ['nope']" in capsys.readouterr().err


def test_sam_download_offline(tmp_path, monkeypatch, capsys):
    set_hub_offline(monkeypatch, True)
    assert main(["weights", "sam", "vit_b", "--dir", str(tmp_path)]) == 2
    assert "sam_vit_b_01ec64.pth" in capsys.readouterr().err
