"""`demoe eval`: a model over a manifest, scored and tabulated."""

import json
import subprocess
import sys

import numpy as np
import pytest

from demoe.config import TASK_NAMES
from demoe.data.manifest import PairRecord, write_manifest
from demoe.evaluation.benchmark import Variant, run_benchmark, variants_from_options
from demoe.evaluation.metrics import psnr
from demoe.imageio import read_array, write_image
from demoe.inference import Deblurrer


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    records = []
    for index, task in enumerate(TASK_NAMES):
        sharp = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
        blurry = np.clip(sharp.astype(int) + rng.integers(-30, 30, sharp.shape), 0, 255).astype(np.uint8)
        write_image(root / f"{task}_sharp.png", sharp)
        write_image(root / f"{task}_blur.png", blurry)
        records.append(PairRecord(str(root / f"{task}_blur.png"), str(root / f"{task}_sharp.png"), task, "synthetic", "test"))
    write_image(root / "night.png", (rng.random((200, 200, 3)) * 60).astype(np.uint8))
    records.append(PairRecord(str(root / "night.png"), None, "low_light", "Real-LOLBlur", "test"))
    records.append(PairRecord(str(root / "train.png"), str(root / "train.png"), "defocus", "synthetic", "train"))
    return write_manifest(root / "manifest.jsonl", records)


@pytest.fixture(scope="module")
def weights(tiny_weights_dir):
    return tiny_weights_dir


def test_rows_cover_every_variant_and_image_with_the_right_scores(manifest, weights):
    from demoe.data.manifest import read_manifest
    from demoe.evaluation.benchmark import filter_records

    records = filter_records(read_manifest(manifest), "test")
    assert len(records) == 6  # the train record is left out
    variants = variants_from_options("auto", [1, 2], manual=True, include_input=True)
    result = run_benchmark(Deblurrer(str(weights), device="cpu"), records, variants, group_by="task", progress=False)
    assert len(result.rows) == 6 * 4
    methods = {row["method"] for row in result.rows}
    assert methods == {"Blurry input", "DeMoE k=1", "DeMoE k=2", "DeMoE† k=1"}
    for row in result.rows:
        record = next(r for r in records if r.blurry == row["blurry"])
        if record.sharp is None:
            assert "niqe" in row and "psnr" not in row
            continue
        if row["method"] == "Blurry input":
            expected = psnr(read_array(record.blurry), read_array(record.sharp))
            assert row["psnr"] == pytest.approx(expected)
        if row["method"] == "DeMoE† k=1":
            assert row["experts_used"] == [record.task]
        if row["method"] == "DeMoE k=2":
            assert len(row["experts_used"]) == 2
    assert result.router["overall_accuracy"] * 6 == sum(
        result.router["confusion"]["matrix"][i][i] for i in range(5)
    )


def test_cli_writes_tables_and_json(manifest, weights, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "demoe", "eval", "--weights", str(weights), "--manifest", str(manifest),
               "--top-k", "1", "5", "--task", "auto", "--json", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"table", "router", "per_image"} <= set(report)
    assert len(report["per_image"]) == 6 * 2
    for name in ("per_image.jsonl", "table.md", "table.csv", "table.json", "router.json"):
        assert (out / name).stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "DeMoE k=1" in table and "DeMoE k=5" in table and "synthetic" in table


def test_no_reference_sets_get_musiq_and_nrqm(manifest, weights, tmp_path, capsys):
    """Blurry-only records (Real-LOLBlur) are scored with every no-reference metric given."""
    from pathlib import Path

    from musiq_reference import save_random_musiq

    from demoe.cli import main
    from demoe.evaluation.musiq import load_musiq, musiq_score
    from demoe.evaluation.nrqm import load_nrqm_model, nrqm

    musiq_file = save_random_musiq(tmp_path / "musiq.pth", 5, hidden_size=48, mlp_dim=64, num_layers=1)
    nrqm_file = Path(__file__).parents[1] / "data" / "nrqm_synthetic_model.mat"
    argv = ["eval", "--weights", str(weights), "--manifest", str(manifest), "--input-metrics", "--json", "--quiet",
            "--musiq-weights", str(musiq_file), "--nrqm-weights", str(nrqm_file)]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    night = [row for row in report["per_image"] if row["source_dataset"] == "Real-LOLBlur"]
    assert len(night) == 2
    blurry = read_array(night[0]["blurry"])
    for row in night:
        assert {"niqe", "musiq", "nrqm"} <= set(row)
        if row["method"] == "Blurry input":  # the restored image is the input itself: check the values
            assert row["musiq"] == pytest.approx(musiq_score(blurry, load_musiq(musiq_file)), abs=1e-5)
            assert row["nrqm"] == pytest.approx(nrqm(blurry, load_nrqm_model(nrqm_file)))
    assert all("musiq" not in row for row in report["per_image"] if row["source_dataset"] == "synthetic")
    assert report["table"]["metrics"]["Real-LOLBlur"] == ["musiq", "nrqm", "niqe"]  # Table 1's column order


def test_cli_names_missing_files(tmp_path, weights):
    write_manifest(tmp_path / "m.jsonl", [PairRecord(str(tmp_path / "gone.png"), None, "defocus", "x", "test")])
    result = subprocess.run(
        [sys.executable, "-m", "demoe", "eval", "--weights", str(weights), "--manifest", str(tmp_path / "m.jsonl")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and "gone.png" in result.stderr


def test_fixed_task_variant_label():
    assert Variant("task", 1, "low_light").label("DeMoE") == "DeMoE [low_light]"
    assert [v.kind for v in variants_from_options("manual")] == ["manual"]


def test_cli_tlc_and_the_models_top_k(manifest, tmp_path, capsys):
    import demoe
    from demoe.cli import main

    base = demoe.create_model("demoe-tiny")
    base.save_pretrained(str(tmp_path / "plain"))
    assert main(["eval", "--weights", str(tmp_path / "plain"), "--manifest", str(manifest), "--tlc", "--quiet",
                 "--device", "cpu"]) == 2
    assert "train_crop" in capsys.readouterr().err
    tuned = demoe.model.DeblurUNet(base.config.replace(train_crop=16, top_k=2)).eval()
    tuned.save_pretrained(str(tmp_path / "tuned"))
    for tlc in ([], ["--tlc"]):
        assert main(["eval", "--weights", str(tmp_path / "tuned"), "--manifest", str(manifest), "--json", "--quiet",
                     "--device", "cpu", *tlc]) == 0
        rows = json.loads(capsys.readouterr().out)["per_image"]
        assert {row["method"] for row in rows} == {"DeMoE k=2"}  # the model's own top_k
        assert all(len(row["experts_used"]) == 2 for row in rows)
