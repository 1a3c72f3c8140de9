"""Table 1 / Table 7 layouts from `demoe eval` runs: --cost, --layout, --combine."""

import json
import re

import numpy as np
import pytest
import torch

import demoe
from demoe.cli import main
from demoe.data.manifest import PairRecord, write_manifest
from demoe.evaluation.comparison import combine_runs, read_run
from demoe.imageio import write_image
from random_weights import randomize_


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("comparison")
    rng = np.random.default_rng(0)
    records = []
    for dataset, task in (("GoPro", "synth_global_motion"), ("DPDD", "defocus")):
        for index in range(2):
            sharp = (rng.random((16, 24, 3)) * 255).astype(np.uint8)
            blurry = np.clip(sharp.astype(int) + rng.integers(-20, 20, sharp.shape), 0, 255).astype(np.uint8)
            write_image(root / f"{dataset}{index}_sharp.png", sharp)
            write_image(root / f"{dataset}{index}_blur.png", blurry)
            records.append(PairRecord(str(root / f"{dataset}{index}_blur.png"), str(root / f"{dataset}{index}_sharp.png"), task, dataset, "test"))
    return write_manifest(root / "manifest.jsonl", records)


@pytest.fixture(scope="module")
def runs(manifest, tmp_path_factory):
    """Two eval runs with --cost: a tiny Restormer and a tiny DeMoE with wavelet experts."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    models = {
        "Restormer": demoe.create_model("restormer", width=8, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,),
                                        refinement_blocks=1, attention_heads=(1, 2)),
        "Wavelet": demoe.create_model("demoe-wavelet", width=8, encoder_blocks=(1,), middle_blocks=1, decoder_blocks=(1,),
                                      router_channels=8, router_hidden=8),
    }
    out = {}
    for name, model in models.items():
        randomize_(model, scale=0.05).save_pretrained(root / f"{name}-weights")
        out[name] = root / name
        args = ["eval", "--weights", str(root / f"{name}-weights"), "--manifest", str(manifest), "--name", name,
                "--cost", "--cost-size", "32", "--cost-repeats", "1", "--device", "cpu", "--quiet", "--out", str(out[name])]
        assert main(args) == 0
    torch.set_num_threads(threads)
    return out, models


def test_eval_with_cost_writes_each_variants_cost(runs):
    out, models = runs
    rows, costs = read_run(out["Wavelet"])
    assert set(costs) == {"Wavelet k=1"} and {r["dataset"] for r in rows} == {"GoPro", "DPDD"}
    assert costs["Wavelet k=1"].params == models["Wavelet"].num_parameters
    assert costs["Wavelet k=1"].macs_g > 0 and costs["Wavelet k=1"].latency_ms > 0
    saved = json.loads((out["Restormer"] / "cost.json").read_text())
    assert saved["Restormer k=1"]["params"] == models["Restormer"].num_parameters


def test_combined_runs_in_table1_and_table7_layouts(runs, capsys, tmp_path):
    out, models = runs
    assert main(["eval", "--combine", str(out["Restormer"]), str(out["Wavelet"]), "--layout", "table1"]) == 0
    table1 = capsys.readouterr().out
    assert "Params (M) / MACs (G) / Runtime (ms)" in table1 and "GoPro" in table1 and "Average" in table1
    assert re.search(rf"\| \*?\*?Restormer k=1\*?\*? \| {models['Restormer'].num_parameters / 1e6:.2f} / ", table1)
    assert main(["eval", "--combine", str(out["Restormer"]), str(out["Wavelet"]), "--layout", "table7", "--out", str(tmp_path)]) == 0
    table7 = capsys.readouterr().out
    header = table7.splitlines()[0]
    assert header.startswith("| Method | Params (M) | MACs (G) | Runtime (ms) | PSNR↑ | SSIM↑") and "GoPro" not in table7
    wavelet_line = next(line for line in table7.splitlines() if line.startswith("| Wavelet"))
    assert f"| {models['Wavelet'].num_parameters / 1e6:.2f} |" in wavelet_line
    table = combine_runs([out["Restormer"], out["Wavelet"]])
    average = table.average("Wavelet k=1")["psnr"]
    assert f"{average:.2f}" in wavelet_line  # the mean over the two datasets' means
    assert (tmp_path / "table7.md").read_text() == table7.split("tables written")[0]
    assert json.loads((tmp_path / "table7.json").read_text())["rows"][1]["cost"]["params"] == models["Wavelet"].num_parameters


def test_combine_refuses_a_method_in_two_runs_and_a_folder_without_results(runs, capsys, tmp_path):
    out, _ = runs
    assert main(["eval", "--combine", str(out["Wavelet"]), str(out["Wavelet"])]) == 2
    assert "rename one with --name" in capsys.readouterr().err
    assert main(["eval", "--combine", str(tmp_path)]) == 2
    assert "no per_image.jsonl" in capsys.readouterr().err
    assert main(["eval", "--layout", "table7"]) == 2
    assert "--manifest is required" in capsys.readouterr().err


@pytest.mark.parametrize("preset, params", [("sfhformer", 7_670_539), ("demoe-plk", 119_639_585)])
def test_cost_command_reports_the_comparison_presets(preset, params, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        argv = ["cost", "--weights", preset, "--size", "32", "--repeats", "1", "--warmup", "0", "--no-ensemble", "--json"]
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    cost = json.loads(capsys.readouterr().out)
    (row,) = cost["rows"]
    assert row["model"] == preset and row["params"] == params and row["ensemble_of"] is None
    assert row["macs_g"] > 0 and row["latency_ms"] > 0
    # the fields `demoe cost --json` printed before the table: the first model's
    assert {key: cost[key] for key in ("params", "macs_g", "latency_ms")} == {
        key: row[key] for key in ("params", "macs_g", "latency_ms")
    }
    assert (cost["size"], cost["top_k"], cost["device"]) == (32, 1, "cpu")
