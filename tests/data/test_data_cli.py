import re

import pytest

from benchmark_trees import make_aio_blur_root

from demoe.cli import main
from demoe.data.manifest import read_manifest


def test_aio_blur_command_writes_a_manifest_and_prints_counts(tmp_path, capsys):
    root = make_aio_blur_root(tmp_path / "datasets")
    out = tmp_path / "out" / "aio.jsonl"
    cache = tmp_path / "out" / "lolblur_mse.csv"
    assert main(["data", "aio-blur", "--root", str(root), "--out", str(out), "--seed", "3", "--mse-cache", str(cache)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"DPDD\s+train\s+1\s+6\s+repeated x6", printed)
    assert re.search(r"LOLBlur\s+train\s+11\s+10\s+MSE subsample", printed)  # default 1400/bin: all but the last bin
    assert re.search(r"total\s+test\s+9\s+9", printed)
    records = read_manifest(out)
    assert len(records) == 6 + 6 + 10 + 8 + 6 + 9 and cache.is_file()
    assert all((tmp_path / r.blurry).is_file() for r in records)
    assert '"task": "defocus"' in out.read_text() and "datasets/" in out.read_text()
    again = tmp_path / "again.jsonl"
    assert main(["data", "aio-blur", "--root", str(root), "--out", str(again), "--seed", "3"]) == 0
    assert [r for r in read_manifest(again)] == records


def test_aio_blur_command_reports_a_missing_dataset_and_accepts_a_path(tmp_path, capsys):
    root = make_aio_blur_root(tmp_path / "datasets")
    (root / "GOPRO_Large").rename(tmp_path / "gopro")
    out = tmp_path / "aio.jsonl"
    assert main(["data", "aio-blur", "--root", str(root), "--out", str(out)]) == 2
    assert "GoPro release unpacked as" in capsys.readouterr().err and not out.exists()
    assert main(["data", "aio-blur", "--root", str(root), "--out", str(out), "--path", f"GoPro={tmp_path / 'gopro'}"]) == 0


def test_aio_blur_ood_command(tmp_path, capsys):
    root = make_aio_blur_root(tmp_path / "datasets")
    out = tmp_path / "ood.jsonl"
    assert main(["data", "aio-blur-ood", "--root", str(root), "--out", str(out)]) == 0
    assert re.search(r"Real-LOLBlur\s+test\s+6\s+4", capsys.readouterr().out)
    records = read_manifest(out)
    assert [r.dataset for r in records].count("Real-LOLBlur") == 4 and len(records) == 9


def test_path_option_is_checked(tmp_path, capsys):
    for value in ("HIDE=/x", "GoPro"):
        with pytest.raises(SystemExit) as exit_info:
            main(["data", "aio-blur", "--root", str(tmp_path), "--out", str(tmp_path / "m.jsonl"), "--path", value])
        assert exit_info.value.code == 2
    assert "unknown dataset 'HIDE'" in capsys.readouterr().err
