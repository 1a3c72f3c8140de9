"""The pieces of the CPU continuation recipe (issue 16): per-image PSNR loss, label routing,
warm starts of the same architecture, bf16 autocast on CPUs with native bf16, a router that
no loss reaches staying frozen, clean stops on SIGTERM, float16 model directories."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from demoe import create_model, load_model
from demoe.checkpoints import save_pretrained
from demoe.train import build_training_model, parse_config, train
from demoe.train import loop
from demoe.train.checkpointing import latest_checkpoint, list_checkpoints
from demoe.train.validation import psnr
from random_weights import randomize_
from train_fakes import SCRIPT, FakePairs, subprocess_env, tiny_config

REPO = Path(__file__).resolve().parents[2]


def _sigterm_after_first_checkpoint(command: list[str], run: Path, whole_group: bool = False
                                    ) -> tuple[subprocess.Popen, str, str]:
    """Start a training process, send SIGTERM once it has written a checkpoint, wait for it.

    whole_group: the process starts its own process group and SIGTERM goes to all of it, its
    DataLoader workers included, as a batch scheduler or `kill -- -PGID` sends it."""
    process = subprocess.Popen(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=whole_group)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(run) is None:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        if whole_group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process, stdout, stderr


@pytest.fixture
def baseline_dir(tmp_path):
    directory = tmp_path / "baseline"
    randomize_(create_model("nafnet-tiny-router")).save_pretrained(str(directory))
    return directory


def test_psnr_loss_is_minus_the_mean_per_image_psnr():
    generator = torch.Generator().manual_seed(0)
    sharp = torch.rand(4, 3, 16, 16, generator=generator)
    # Image 0 barely wrong, image 3 very wrong: L1 is dominated by image 3, PSNR loss is not.
    noise = torch.randn(4, 3, 16, 16, generator=generator) * torch.tensor([0.01, 0.05, 0.1, 0.4]).view(4, 1, 1, 1)
    restored = sharp + noise
    expected = -psnr(restored, sharp).mean()
    torch.testing.assert_close(loop.pixel_loss_value(restored, sharp, "psnr"), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loop.pixel_loss_value(restored, sharp, "l1"), F.l1_loss(restored, sharp))
    # Per-image weighting: halving the error of the best image moves the PSNR loss by 3 dB / 4.
    better = restored.clone()
    better[0] = sharp[0] + noise[0] / 2
    change = loop.pixel_loss_value(restored, sharp, "psnr") - loop.pixel_loss_value(better, sharp, "psnr")
    assert abs(float(change) - 10 * torch.log10(torch.tensor(4.0)) / 4) < 0.05


def test_label_routing_trains_only_the_experts_of_the_batch_labels(tmp_path, baseline_dir):
    """Every image goes through its own class's expert: with labels 0 and 1 only (FakePairs
    cycles the five labels; 2 items per epoch = labels 0, 1), the other experts stay put."""
    values = tiny_config(
        stage="experts",
        model={"preset": "demoe-tiny", "init_from": str(baseline_dir)},
        loss={"class_weight": 0.0},
        train={"routing": "label", "batch_size": 2, "total_steps": 3, "trainable": "all"},
    )
    config = parse_config(values)
    before = build_training_model(config).state_dict()
    train(config, tmp_path / "run", train_dataset=FakePairs(2))
    after = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    changed = {key for key in after if not torch.equal(after[key], before[key])}
    for expert in (0, 1):
        assert any(f".experts.{expert}." in key for key in changed), expert
    others = [key for key in changed if ".experts." in key and not any(f".experts.{e}." in key for e in (0, 1))]
    assert not others, others
    assert any(key.startswith("encoders.") for key in changed)  # trainable all
    # No loss reaches the router (class_weight 0, routing by label): it stays as it was.
    assert not [key for key in changed if key.startswith("router.")]


def test_label_routing_needs_experts():
    with pytest.raises(ValueError, match="train.routing"):
        parse_config(tiny_config(train={"routing": "label"}))


def test_warm_start_from_the_same_architecture_keeps_every_weight(tmp_path):
    shipped = tmp_path / "shipped"
    randomize_(create_model("demoe-tiny")).save_pretrained(str(shipped))
    config = parse_config(tiny_config(stage="experts", model={"preset": "demoe-tiny", "init_from": str(shipped)},
                                      loss={"class_weight": 0.0}))
    model = build_training_model(config)
    expected = load_model(shipped).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_router_no_loss_reaches_is_frozen(baseline_dir):
    model = create_model("nafnet-tiny-router")
    no_class_loss = parse_config(tiny_config(loss={"class_weight": 0.0}))
    assert model.router in loop.frozen_modules(model, no_class_loss)
    assert model.router not in loop.frozen_modules(model, parse_config(tiny_config()))
    dense = parse_config(tiny_config(stage="experts", model={"preset": "demoe-tiny", "init_from": str(baseline_dir)},
                                     loss={"class_weight": 0.0}, train={"trainable": "all"}))
    moe = create_model("demoe-tiny")
    assert moe.router not in loop.frozen_modules(moe, dense)  # the dense mixture reaches it


def test_auto_precision_is_bf16_on_cpus_with_native_bf16(monkeypatch):
    config = parse_config(tiny_config())
    cpu = torch.device("cpu")
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    assert loop._precision(config, cpu) == (torch.bfloat16, False)
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    assert loop._precision(config, cpu) == (None, False)
    explicit = parse_config(tiny_config(runtime={"device": "cpu", "precision": "fp32"}))
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    assert loop._precision(explicit, cpu) == (None, False)


def test_bf16_channels_last_training_runs_and_learns(tmp_path):
    values = tiny_config(runtime={"device": "cpu", "precision": "bf16"}, train={"total_steps": 6},
                         optim={"lr": 2e-3}, loss={"pixel": "psnr"})
    result = train(parse_config(values), tmp_path / "run", train_dataset=FakePairs(8))
    assert result.step == 6
    weights = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert all(tensor.dtype == torch.float32 for tensor in weights.values() if tensor.is_floating_point())


def test_float16_model_directory_loads_as_float32_with_the_same_outputs(tmp_path):
    model = randomize_(create_model("demoe-tiny"), scale=0.05).eval()
    save_pretrained(model, tmp_path / "fp16", dtype=torch.float16)
    stored = load_file(str(tmp_path / "fp16" / "model.safetensors"))
    assert {tensor.dtype for tensor in stored.values() if tensor.is_floating_point()} == {torch.float16}
    loaded = load_model(tmp_path / "fp16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(x).image, loaded(x).image
    assert float(psnr(got.clamp(0, 1), expected.clamp(0, 1))) > 50


@pytest.mark.slow
def test_sigterm_stops_after_a_step_with_a_checkpoint_and_resume_is_exact(tmp_path):
    values = tiny_config(train={"total_steps": 9}, log={"save_every": 4, "keep_checkpoints": 0})
    reference = tmp_path / "reference"
    train(parse_config(values), reference, train_dataset=FakePairs(12))

    run = tmp_path / "stopped"
    command = [sys.executable, str(SCRIPT), str(run), json.dumps(values), "--delay", "0.1"]
    process, stdout, stderr = _sigterm_after_first_checkpoint(command, run)
    assert process.returncode == 0, stderr
    assert "stopped by signal" in stdout
    steps = [step for step, _ in list_checkpoints(run)]
    assert 4 <= steps[-1] < 9 and steps[-1] != 8, steps  # the stop step itself was saved
    result = train(parse_config(values), run, resume=True, train_dataset=FakePairs(12))
    assert result.step == 9 and not result.stopped_by_signal
    final, expected = load_file(str(run / "last" / "model.safetensors")), load_file(str(reference / "last" / "model.safetensors"))
    for key in expected:
        assert torch.equal(final[key], expected[key]), key


@pytest.mark.slow
def test_demoe_train_exits_130_on_sigterm_and_names_the_resume_command(tmp_path):
    run = tmp_path / "smoke"
    command = [sys.executable, "-m", "demoe", "train", "configs/smoke.yaml", "--out", str(run),
               "--set", "train.total_steps=100000", "log.progress=false"]
    process, stdout, stderr = _sigterm_after_first_checkpoint(command, run)
    assert process.returncode == 130, stderr
    assert "--resume" in stdout
    assert list_checkpoints(run)


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_with_dataloader_workers_still_stops_cleanly(tmp_path):
    """The workers leave SIGTERM (and Ctrl-C's SIGINT) to the main process: the run finishes its
    step, saves it and exits 130, instead of dying with "DataLoader worker ... killed by signal"
    and losing the steps since the last checkpoint."""
    run = tmp_path / "smoke"
    command = [sys.executable, "-m", "demoe", "train", "configs/smoke.yaml", "--out", str(run),
               "--set", "train.total_steps=100000", "train.num_workers=1", "log.progress=false",
               "log.save_every=5", "log.validate_every=0"]
    process, stdout, stderr = _sigterm_after_first_checkpoint(command, run, whole_group=True)
    assert process.returncode == 130, stderr[-3000:]
    assert "stopped by signal" in stdout and "killed by signal" not in stderr
    stopped_at = int(re.search(r"stopped by signal \d+ after step (\d+)", stdout).group(1))
    assert [step for step, _ in list_checkpoints(run)][-1] == stopped_at
