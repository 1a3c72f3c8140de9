"""`demoe train` end to end on real data pipelines: a manifest of image files, and the smoke
config on blur synthesised from the shipped photographs."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demoe import load_model
from demoe.cli import main
from demoe.config import TASK_NAMES
from demoe.data.manifest import PairRecord, write_manifest
from demoe.imageio import write_image
from train_fakes import subprocess_env

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "src" / "demoe" / "assets" / "photos"


def write_pairs(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    records = []
    for index in range(count):
        sharp = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
        blurry = ((sharp.astype(np.uint16) + np.roll(sharp, 2, axis=1)) // 2).astype(np.uint8)
        write_image(folder / f"sharp_{index}.png", sharp)
        write_image(folder / f"blurry_{index}.png", blurry)
        task = TASK_NAMES[index % len(TASK_NAMES)]
        split = "train" if index < count - 2 else "test"
        records.append(
            PairRecord(str(folder / f"blurry_{index}.png"), str(folder / f"sharp_{index}.png"), task, f"set{index % 2}", split)
        )
    return write_manifest(folder / "manifest.jsonl", records)


def test_train_from_a_manifest(tmp_path):
    pytest.importorskip("demoe.data.datasets", reason="PairedCropDataset (data-bench) not merged yet")
    manifest = write_pairs(tmp_path / "data", 10)
    config = tmp_path / "run.yaml"
    config.write_text(
        "stage: pretrain\n"
        "model: {preset: nafnet-tiny-router}\n"
        f"data:\n  train: {{manifest: {manifest}, crop_size: 32}}\n"
        f"  val: {{manifest: {manifest}, split: test, crop_size: 32}}\n"
        "train: {batch_size: 4, total_steps: 3, num_workers: 0}\n"
        "runtime: {device: cpu}\n"
        "log: {progress: false, validate_every: 0}\n"
    )
    run = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run), "--save-every", "2", "--max-steps", "2"]) == 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000002"]
    assert main(["train", str(config), "--out", str(run), "--resume", "--set", "log.log_every=1"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    assert load_model(run / "last").config.name == "nafnet-tiny-router"
    assert "log_every: 1" in (run / "config.yaml").read_text()


@pytest.mark.slow
def test_smoke_config_runs_from_the_repository_root(tmp_path):
    if not PHOTOS.is_dir():
        pytest.skip(f"{PHOTOS} (the shipped photographs, data-synth) is not in this checkout yet")
    command = [sys.executable, "-m", "demoe", "train", "configs/smoke.yaml", "--out", str(tmp_path / "smoke"),
               "--max-steps", "4", "--set", "log.save_every=2", "log.progress=false"]
    completed = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert load_model(tmp_path / "smoke" / "last").config.name == "nafnet-tiny-router"
    assert (tmp_path / "smoke" / "checkpoints" / "step-000004").is_dir()
