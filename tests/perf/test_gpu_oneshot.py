"""benchmarks/gpu_oneshot.py end to end on CPU with a tiny budget: pack, run, merge; and the
16 MB splitter with a small limit. (On CPU nothing GPU-specific is measured.)"""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import demoe
from demoe.data.synthetic import shipped_photo_paths

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_oneshot.py"


@pytest.fixture(scope="module")
def oneshot():
    spec = importlib.util.spec_from_file_location("gpu_oneshot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_oneshot"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def photo_folders(root: Path) -> tuple[Path, Path]:
    """The shipped photographs as a training collection (4) and as the gate's validation
    collections (shared/data/sharp/{Kodak24,McMaster}, one each)."""
    train, shared = root / "photos" / "shipped", root / "shared"
    train.mkdir(parents=True)
    for index, path in enumerate(shipped_photo_paths()):
        if index < 4:
            shutil.copy(path, train / path.name)
        else:
            folder = shared / "data" / "sharp" / ("Kodak24" if index == 4 else "McMaster")
            folder.mkdir(parents=True)
            shutil.copy(path, folder / path.name)
    return train, shared


def test_pack_run_merge_end_to_end(tmp_path, oneshot, one_thread):
    train_photos, shared = photo_folders(tmp_path)
    pack = tmp_path / "pack"
    oneshot.main(["pack", "--train-photos", str(train_photos), "--shared", str(shared), "--out", str(pack),
                  "--val-crop", "32", "--max-mib", "1"])
    index = json.loads((pack / "pack.json").read_text())
    assert len(index["train"]) == 4 and not index["train_skipped"]
    assert len(index["val"]["items"]) == 2 * (5 + 4)  # the gate's pairs: 2 photographs x (5 normal + 4 dark)
    assert {item["group"] for item in index["val"]["items"]} == {"normal", "dark"}
    for entry in index["train"]:  # lossless: the packed photograph is the source's pixels
        np.testing.assert_array_equal(oneshot.read_array(pack / "train" / entry["file"]),
                                      oneshot.load_photo(entry["source"]))

    out = tmp_path / "out"
    oneshot.main([
        "run", "--pack", str(pack), "--out", str(out), "--device", "cpu", "--preset", "demoe-tiny",
        "--measure-presets", "demoe-tiny", "--crop", "32", "--batch", "5", "--latency-size", "32", "--repeats", "2",
        "--measure-steps", "1", "--chunks", "2", "--budget-minutes", "10", "--reserve-seconds", "0",
        "--max-steps", "4", "--run-dir", str(tmp_path / "run"),
    ])
    files = sorted(path.name for path in out.iterdir())
    assert files == ["config.json", "measurements.json", "model-00001-of-00001.safetensors", "train_log.json"]
    assert all((out / name).stat().st_size <= oneshot.FILE_LIMIT for name in files)

    measurements = json.loads((out / "measurements.json").read_text())
    rows = measurements["latency"]["demoe-tiny"]["rows"]
    assert {(row["precision"], row["path"]) for row in rows if "precision" in row} == {
        (precision, path) for precision in ("fp32", "bf16")
        for path in ("eager, automatic routing (top-1)", "eager, fixed task")}
    assert all(row["median_ms"] > 0 for row in rows if "median_ms" in row)
    assert any(row.get("note", "").startswith("not measured") for row in rows)  # no CUDA graphs on CPU
    rates = measurements["training"]["demoe-tiny"]
    assert min(rates[key] for key in ("model_step_images_per_s", "synthesis_images_per_s",
                                      "step_with_synthesis_images_per_s")) > 0
    assert measurements["choice"]["preset"] == "demoe-tiny" and measurements["choice"]["warm_start"] is None
    agreement = measurements["precision_agreement"]["demoe-tiny (trained here, validation pairs)"]
    assert agreement["images"] == 16 and agreement["bf16_vs_fp32_psnr_db"]["mean"] > 20

    log = json.loads((out / "train_log.json").read_text())
    assert log["status"] == "done" and log["final_step"] == log["total_steps"] == 4
    assert [row["step"] for row in log["evaluations"]] == [0, 2, 4]  # before training, after each chunk
    assert [chunk["steps"] for chunk in log["chunks"]] == [[0, 2], [2, 4]]
    for row in log["evaluations"]:
        assert set(row["psnr_by_task_db"]) == set(demoe.TASK_NAMES)
        assert set(row["psnr_by_group_db"]) == {"normal", "dark"}
        assert row["gain_by_task_db"]["defocus"] == pytest.approx(
            row["psnr_by_task_db"]["defocus"] - row["input_psnr_by_task_db"]["defocus"])
    assert all(chunk["images_per_s"] > 0 for chunk in log["chunks"])

    # The float16 shards merge into a model directory that demoe loads, with the run's weights.
    merged = oneshot.merge(out, tmp_path / "merged")
    model = demoe.load_model(merged)
    trained = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        expected = trained[name].to(torch.float16).to(tensor.dtype) if tensor.is_floating_point() else trained[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=0)
    with safe_open(str(merged / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} <= {torch.float16, torch.int64}


def test_split_respects_the_file_limit_and_merges_back(tmp_path, oneshot):
    model = demoe.create_model("demoe-tiny")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    source = tmp_path / "model"
    model.save_pretrained(str(source))
    limit = 20_000
    written = oneshot.write_shards(source, tmp_path / "shards", max_bytes=limit)
    shards = [path for path in written if path.suffix == ".safetensors"]
    assert len(shards) > 3 and all(path.stat().st_size <= limit for path in shards)
    merged = demoe.load_model(oneshot.merge(tmp_path / "shards", tmp_path / "merged"))
    for name, tensor in model.state_dict().items():
        expected = tensor.to(torch.float16).to(tensor.dtype) if tensor.is_floating_point() else tensor
        torch.testing.assert_close(merged.state_dict()[name], expected, rtol=0, atol=0)

    shards[1].unlink()
    with pytest.raises(FileNotFoundError, match="missing shard"):
        oneshot.merge(tmp_path / "shards", tmp_path / "again")
    with pytest.raises(ValueError, match="exceeds"):
        oneshot.split_state({"big": torch.zeros(10_000)}, max_bytes=limit)
