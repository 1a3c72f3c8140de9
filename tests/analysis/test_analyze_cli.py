import json

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import demoe
from demoe.cli import main
from demoe.data.manifest import PairRecord, write_manifest
from demoe.imageio import write_rgb_float

from random_weights import randomize_

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE


# A very small MoE architecture (5 NAFBlocks, 2 experts) keeps the per-layer figures quick.
MICRO = dict(encoder_blocks=(1,), middle_blocks=0, decoder_blocks=(0,), num_experts=2, num_classes=2,
             task_names=("defocus", "global_motion"))


@pytest.fixture
def micro_dirs(tmp_path):
    paths = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        model = demoe.create_model("demoe-tiny", **MICRO)
        if seed == 1:
            randomize_(model)
        path = tmp_path / f"model{seed}"
        model.save_pretrained(path)
        paths.append(path)
    return paths


@pytest.fixture
def tiny_dir(tmp_path):
    path = tmp_path / "tiny"
    randomize_(demoe.create_model("demoe-tiny")).save_pretrained(path)
    return path


@pytest.fixture
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for index, (dataset, task) in enumerate([("GoPro", "synth_global_motion")] * 3 + [("DPDD", "defocus")] * 3):
        path = tmp_path / "images" / f"{index}.png"
        write_rgb_float(path, rng.random((24, 40 + index, 3)).astype(np.float32))
        records.append(PairRecord(str(path), None, task, dataset, "test"))
    return write_manifest(tmp_path / "test.jsonl", records)



@pytest.fixture
def single_openmp_thread():
    # scikit-learn's t-SNE spins OpenMP threads; on a shared CI machine that costs seconds.
    with threadpool_limits(limits=1):
        yield


def test_similarity_json_schema_for_two_models(tmp_path, capsys):
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = demoe.create_model("demoe-tiny")
        if seed == 1:
            randomize_(model)
        model.save_pretrained(tmp_path / f"model{seed}")
    assert main(["analyze", "similarity", str(tmp_path / "model1"), str(tmp_path / "model2"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"models", "layers", "by_type", "pairs"}
    assert report["models"] == ["model1", "model2"]
    assert len(report["pairs"]) == 1
    for layer in report["layers"]:
        assert set(layer) == {"name", "type", "pearson", "cka"}
        assert layer["type"] in ("conv1x1", "conv3x3", "norm", "sca")
    assert set(report["by_type"]) == {"conv1x1", "conv3x3", "norm", "sca"}
    assert set(report["by_type"]["conv3x3"]) == {"pearson", "cka", "num_layers"}
    # With two models the top level is exactly the one pair.
    assert report["layers"] == report["pairs"][0]["layers"]
    assert report["by_type"] == report["pairs"][0]["by_type"]
    # model2 has fresh LayerNorm scales (all ones): undefined, reported as null.
    assert report["by_type"]["norm"]["pearson"] is None


def test_similarity_of_three_models_writes_figures(micro_dirs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "similarity", *map(str, micro_dirs), "--out", str(out)]) == 0
    assert "mean over 3 pair(s)" in capsys.readouterr().out
    report = json.loads((out / "similarity.json").read_text())
    assert [(p["a"], p["b"]) for p in report["pairs"]] == [("model1", "model2"), ("model1", "model3"), ("model2", "model3")]
    for name in ("similarity_pearson.png", "similarity_cka.png", "similarity_heatmap_pearson.png", "similarity_heatmap_cka.png"):
        assert_png(out / name)


def test_similarity_errors(micro_dirs, tmp_path, capsys):
    assert main(["analyze", "similarity", str(micro_dirs[0])]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["analyze", "similarity", str(micro_dirs[0]), str(tmp_path / "missing")]) == 2
    assert "no weights found" in capsys.readouterr().err
    demoe.create_model("nafnet-tiny-router").save_pretrained(tmp_path / "baseline")
    assert main(["analyze", "similarity", str(micro_dirs[0]), str(tmp_path / "baseline")]) == 2
    assert "architecture" in capsys.readouterr().err


def test_experts(micro_dirs, tmp_path, capsys):
    out = tmp_path / "experts"
    assert main(["analyze", "experts", str(micro_dirs[0]), "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [block["block"] for block in report["blocks"]] == ["middle_moe", "decoder_moes.0"]
    assert report["blocks"][0]["experts"] == ["defocus", "global_motion"]
    assert len(report["blocks"][0]["pairs"]) == 1
    assert set(report["by_type"]) == {"conv1x1", "conv3x3", "norm", "sca"}
    for name in ("experts.json", "experts_pearson.png", "experts_cka.png", "experts_heatmap_pearson.png", "experts_heatmap_cka.png"):
        assert (out / name).stat().st_size > 0


def test_router_study(tiny_dir, manifest, tmp_path, capsys):
    out = tmp_path / "router"
    assert main(["analyze", "router", "--weights", str(tiny_dir), "--manifest", str(manifest),
                 "--out", str(out), "--max-side", "32", "--json"]) == 0
    study = json.loads(capsys.readouterr().out)
    assert [d["dataset"] for d in study["datasets"]] == ["GoPro", "DPDD"]
    assert sum(map(sum, study["confusion"]["matrix"])) == 6
    assert sum(study["datasets"][0]["mean_output"].values()) == pytest.approx(1.0, abs=1e-5)
    assert_png(out / "router_confusion.png")
    assert_png(out / "router_mean_output.png")
    assert (out / "router.md").read_text().startswith("| Dataset |")


def test_tsne(tiny_dir, manifest, tmp_path, single_openmp_thread):
    out = tmp_path / "tsne"
    assert main(["analyze", "tsne", "--weights", str(tiny_dir), "--manifest", str(manifest), "--out", str(out)]) == 0
    points = json.loads((out / "tsne.json").read_text())["points"]
    assert len(points) == 6 and {p["dataset"] for p in points} == {"GoPro", "DPDD"}
    assert_png(out / "tsne.png")


def test_cost_json_with_ensemble_row(capsys):
    assert main(["analyze", "cost", "--models", "demoe-tiny", "--size", "32", "--repeats", "1", "--warmup", "0", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    first, ensemble = table["rows"]
    assert first["model"] == "demoe-tiny" and first["ensemble_of"] is None
    assert ensemble["model"] == "demoe-tiny-5 ensemble" and ensemble["ensemble_of"] == 5
    assert first["params"] == demoe.create_model("demoe-tiny").num_parameters
