"""A run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from demoe.train import parse_config, train
from demoe.train.checkpointing import latest_checkpoint, list_checkpoints
from train_fakes import SCRIPT, FakePairs, subprocess_env, tiny_config


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def assert_identical(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    different = [key for key in first if not torch.equal(first[key], second[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# Stage 1 with router dropout (RNG), EMA and 3 steps per epoch (12 items / batch 4), so that the
# checkpoint at step 2 sits in the middle of epoch 0.
VALUES = tiny_config(train={"total_steps": 7, "ema_decay": 0.5}, log={"keep_checkpoints": 0})


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact(tmp_path):
    reference = tmp_path / "reference"
    train(parse_config(VALUES), reference, train_dataset=FakePairs(12))

    run = tmp_path / "killed"
    command = [sys.executable, str(SCRIPT), str(run), json.dumps(VALUES), "--delay", "0.1"]
    process = subprocess.Popen(command, env=subprocess_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(run) is None:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    steps = [step for step, _ in list_checkpoints(run)]
    assert steps and steps[-1] < 7, steps

    # Debris of an interrupted write must be ignored: a temporary folder, an incomplete one.
    (run / "checkpoints" / ".tmp-step-000006-4242").mkdir()
    (run / "checkpoints" / ".tmp-step-000006-4242" / "model.safetensors").write_bytes(b"partial")
    (run / "checkpoints" / "step-000099").mkdir()
    (run / "checkpoints" / "step-000099" / "config.json").write_text("{}")

    result = train(parse_config(VALUES), run, resume=True, train_dataset=FakePairs(12))
    assert result.step == 7
    assert not (run / "checkpoints" / ".tmp-step-000006-4242").exists()
    final = run / "checkpoints" / "step-000007"
    expected = reference / "checkpoints" / "step-000007"
    assert_identical(read_weights(final), read_weights(expected))
    assert_identical(load_file(str(final / "ema.safetensors")), load_file(str(expected / "ema.safetensors")))
    assert_identical(read_weights(run / "last"), read_weights(reference / "last"))


def test_max_steps_then_resume_matches_one_run(tmp_path):
    """Stopping early with max_steps does not change the schedule; resuming finishes the run."""
    values = tiny_config(train={"total_steps": 5})
    train(parse_config(values), tmp_path / "whole", train_dataset=FakePairs(12))
    first = train(parse_config(values), tmp_path / "parts", max_steps=3, train_dataset=FakePairs(12))
    assert (first.step, first.total_steps) == (3, 5)
    train(parse_config(values), tmp_path / "parts", resume=True, train_dataset=FakePairs(12))
    assert_identical(read_weights(tmp_path / "parts" / "last"), read_weights(tmp_path / "whole" / "last"))
    state = torch.load(tmp_path / "parts" / "checkpoints" / "step-000005" / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["batch_in_epoch"], state["steps_per_epoch"]) == (1, 2, 3)
    assert set(state["rng"][0]) >= {"python", "numpy", "torch"}
    assert {"optimizer", "scheduler", "grad_scaler"} <= set(state)


class _RunsAShellCommand:
    def __reduce__(self):
        import os

        return os.system, ("echo planted",)


def test_a_refused_resume_leaves_the_runs_config_as_it_was(tmp_path):
    from demoe.checkpoints import CheckpointReadError
    from demoe.train.checkpointing import STATE_FILE

    run = tmp_path / "run"
    train(parse_config(tiny_config(train={"total_steps": 2})), run, train_dataset=FakePairs(8))
    torch.save({"step": _RunsAShellCommand()}, latest_checkpoint(run) / STATE_FILE)  # planted
    before = (run / "config.yaml").read_text()
    changed = parse_config(tiny_config(train={"total_steps": 5}))
    with pytest.raises(CheckpointReadError, match="refusing"):
        train(changed, run, resume=True, train_dataset=FakePairs(8))
    assert (run / "config.yaml").read_text() == before


def test_resuming_with_ema_newly_set_starts_the_average_at_the_resumed_weights(tmp_path, capsys):
    run = tmp_path / "run"
    train(parse_config(tiny_config(train={"total_steps": 4})), run, train_dataset=FakePairs(8), max_steps=2)
    resumed = read_weights(latest_checkpoint(run))
    with_ema = parse_config(tiny_config(train={"total_steps": 4, "ema_decay": 0.999999}))  # barely moves
    train(with_ema, run, resume=True, train_dataset=FakePairs(8))
    assert "holds no EMA weights" in capsys.readouterr().err
    average, trained = read_weights(run / "last"), read_weights(latest_checkpoint(run))  # last/ = EMA
    parameters = [key for key in resumed if "running_" not in key and "num_batches" not in key]
    moved = max(float((trained[key] - resumed[key]).abs().max()) for key in parameters)
    assert moved > 1e-4  # two steps of training moved the weights ...
    for key in parameters:  # ... and the average stayed where the resumed run started
        torch.testing.assert_close(average[key], resumed[key], atol=1e-6, rtol=0)
