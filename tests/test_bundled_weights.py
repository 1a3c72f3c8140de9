"""The bundled default weights: present, small, loaded by default by the API and the CLI."""

import hashlib
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import demoe
from demoe.checkpoints import BUNDLED_DIR, DEFAULT_WEIGHTS, WEIGHTS_FILE, bundled_weights, save_pretrained
from demoe.cli import main
from demoe.config import TASK_NAMES
from random_weights import randomize_


def test_default_weights_are_bundled_and_within_40_mb():
    assert DEFAULT_WEIGHTS in bundled_weights()
    assert (BUNDLED_DIR / DEFAULT_WEIGHTS / WEIGHTS_FILE).stat().st_size <= 40 * 1024 * 1024


def test_load_model_without_arguments_gives_a_trained_demoe_in_eval_mode():
    model = demoe.load_model()
    assert not model.training and model.config.is_moe and model.config.task_names == TASK_NAMES
    # trained, not freshly initialised: fresh NAFBlocks have zero layer scales
    betas = [p for name, p in model.named_parameters() if name.endswith(".beta")]
    assert all(float(beta.abs().sum()) > 0 for beta in betas)


def test_deblur_command_works_with_no_weights_argument(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((37, 53, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    assert main(["deblur", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--device", "cpu", "--quiet"]) == 0
    outputs = list((tmp_path / "out").iterdir())
    assert len(outputs) == 1 and Image.open(outputs[0]).size == (53, 37)


def test_api_deblur_uses_the_bundled_weights():
    image = (np.random.default_rng(1).random((32, 40, 3)) * 255).astype(np.uint8)
    restored = demoe.deblur(image, device="cpu")
    assert restored.shape == image.shape and restored.dtype == np.uint8


# ---------------------------------------------------------------------------------------------
# The bundled folder as shipped by benchmarks/ship_weights.py: licence, card, checksums, no path
# of the training machine.

SHIP_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ship_weights.py"


@pytest.fixture(scope="module")
def ship():
    spec = importlib.util.spec_from_file_location("ship_weights", SHIP_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_bundled_folder_carries_licence_card_and_matching_sha256(ship):
    folder = BUNDLED_DIR / DEFAULT_WEIGHTS
    licence = (folder / "LICENSE").read_text()
    assert "research and educational use only" in licence and "MIT" in licence
    assert "docs/model-card.md" in (folder / "README.md").read_text()
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    names = {line.split("  ", 1)[1] for line in lines}
    assert names == {"model.safetensors", "config.json", "LICENSE", "README.md"}
    for line in lines:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{name} changed after shipping"


def test_bundled_config_records_train_crop_and_no_machine_path():
    folder = BUNDLED_DIR / DEFAULT_WEIGHTS
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["train_crop"] > 0 and demoe.load_model().tlc_window > 0
    for text in _strings(config):
        assert not text.startswith(("/", "~")) and not re.match(r"^[A-Za-z]:\\", text), text


def test_ship_refuses_a_failed_gate_and_packages_a_passed_one(ship, tmp_path):
    gate_out = tmp_path / "gate"
    model = randomize_(demoe.create_model("demoe-tiny"))
    save_pretrained(model, gate_out / "fp16", extra={"stage": "experts", "run_dir": str(tmp_path), "step": 7}, dtype=torch.float16)
    groups = {"defocus": {"gain": 1.5}, "low_light": {"gain": 10.25}}
    report = {
        "candidate_dir": "runs/x/last",
        "passed": False,
        "candidate": {
            "validation": {"count": 2, "mean_psnr": 30.0, "mean_input_psnr": 25.0, "groups": groups,
                           "router_accuracy": 1.0, "router_accuracy_4way": 1.0},
            "real": {"groups": {"GoPro": {"gain": 1.25}}},
        },
    }
    (gate_out / "gate.json").write_text(json.dumps(report))
    into = tmp_path / "bundled" / "default"
    arguments = [str(gate_out), "--train-crop", "64", "--trained", "today", "--into", str(into)]
    assert ship.main(arguments) == 1 and not into.exists()

    report["passed"] = True
    (gate_out / "gate.json").write_text(json.dumps(report))
    assert ship.main(arguments) == 0
    shipped = demoe.load_model(into)
    assert shipped.config.train_crop == 64 and shipped.config.replace(train_crop=0) == model.config
    assert (into / "model.safetensors").read_bytes() == (gate_out / "fp16" / "model.safetensors").read_bytes()
    config = json.loads((into / "config.json").read_text())
    assert "run_dir" not in config["extra"] and config["extra"]["step"] == 7
    assert config["extra"]["gate"]["gain_db"] == {"defocus": 1.5, "low_light": 10.25}
    assert "float16" in (into / "README.md").read_text() and "+1.25" in (into / "README.md").read_text()
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=into, capture_output=True).returncode == 0


def test_the_readme_deblur_command_works_from_a_fresh_clone(tmp_path):
    root = Path(__file__).resolve().parents[1]
    command = next(line for line in (root / "README.md").read_text().splitlines() if "&& demoe deblur " in line)
    arguments = command.split("&& demoe ", 1)[1].split()
    assert arguments[0] == "deblur" and arguments[arguments.index("-o") + 1] == "out/"
    arguments[1] = str(root / arguments[1])  # the README runs in the clone's root
    arguments[arguments.index("-o") + 1] = str(tmp_path / "out")
    assert main([*arguments, "--device", "cpu", "--quiet"]) == 0
    (restored,) = (tmp_path / "out").iterdir()
    assert Image.open(restored).size == Image.open(arguments[1]).size
