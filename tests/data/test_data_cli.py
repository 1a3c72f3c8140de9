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


@pytest.mark.parametrize(
    "dataset, counts",
    [
        ("GoPro", {"train": 4, "test": 2}),
        ("RealBlur-J", {"train": 6, "test": 2}),
        ("ReLoBlur", {"train": 3, "test": 1}),
        ("LOLBlur", {"train": 11, "test": 2}),
        ("DPDD", {"train": 1, "val": 1, "test": 2}),
        ("RealDOF", {"test": 3}),
        ("RSBlur", {"train": 1, "val": 1, "test": 2}),
        ("Real-LOLBlur", {"test": 4}),
    ],
)
def test_manifest_of_one_dataset_keeps_its_released_splits(tmp_path, capsys, dataset, counts):
    root = make_aio_blur_root(tmp_path / "datasets")
    out = tmp_path / f"{dataset}.jsonl"
    assert main(["data", "manifest", dataset, "--root", str(root), "--out", str(out)]) == 0
    records = read_manifest(out)
    assert {split: sum(r.split == split for r in records) for split in counts} == counts
    assert len(records) == sum(counts.values()) and {r.dataset for r in records} == {dataset}
    assert all((tmp_path / r.blurry).is_file() for r in records)
    assert f"wrote {len(records)} records of {dataset}" in capsys.readouterr().out


def test_manifest_of_one_split_and_of_a_dataset_given_by_path(tmp_path, capsys):
    root = make_aio_blur_root(tmp_path / "datasets")
    (root / "GOPRO_Large").rename(tmp_path / "gopro")
    out = tmp_path / "gopro_test.jsonl"
    args = ["data", "manifest", "GoPro", "--root", str(root), "--out", str(out)]
    assert main(args) == 2 and "GoPro: missing folder" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--path", f"GoPro={tmp_path / 'gopro'}", "--split", "test"]) == 0
    assert [r.split for r in read_manifest(out)] == ["test", "test"]
    assert main(["data", "manifest", "RealDOF", "--root", str(root), "--out", str(out), "--split", "train"]) == 2
    assert "RealDOF has splits test, not train" in capsys.readouterr().err


def test_aio_blur_lists_every_found_and_missing_dataset_at_once(tmp_path, capsys):
    root = tmp_path / "datasets"
    make_aio_blur_root(root)
    for folder in ("RealBlur", "ReLoBlur", "LOLBlur"):  # only GoPro and DPDD unpacked
        (root / folder).rename(tmp_path / folder)
    out = tmp_path / "aio.jsonl"
    assert main(["data", "aio-blur", "--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "AIO-Blur needs 5 datasets: found 2, missing 3" in err
    assert re.search(r"found\s+GoPro\s+\S*GOPRO_Large", err) and re.search(r"found\s+DPDD\s+\S*dd_dp_dataset_canon", err)
    for dataset in ("RealBlur-J", "ReLoBlur", "LOLBlur"):
        assert re.search(rf"missing\s+{dataset}\s+{dataset}: missing folder", err)
    assert not out.exists()
