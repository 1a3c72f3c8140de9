"""Two CPU processes under torchrun (gloo) train the same weights as one process with the
same global batch."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from demoe import create_model
from demoe.train import parse_config, train
from train_fakes import SCRIPT, FakePairs, randomize_, subprocess_env, tiny_config


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    baseline = tmp_path / "baseline"
    randomize_(create_model("nafnet-tiny-router")).save_pretrained(str(baseline))
    # Stage 2 with the router frozen in eval mode: no batch statistics, so the global batch
    # split over two ranks is mathematically the same computation as one process.
    values = tiny_config(
        stage="experts",
        model={"preset": "demoe-tiny", "init_from": str(baseline)},
        loss={"class_weight": 0.0},
        train={"batch_size": 4, "total_steps": 4},
        # fp32: a split batch is then the same arithmetic (bf16 autocast, the CPU default on
        # CPUs with native bf16, rounds differently per sub-batch)
        runtime={"precision": "fp32"},
        log={"tensorboard": True},
    )
    single = tmp_path / "single"
    train(parse_config(values), single, train_dataset=FakePairs(12))

    double = tmp_path / "double"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(SCRIPT), str(double), json.dumps(values),
    ]
    completed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]

    one = load_file(str(single / "last" / "model.safetensors"))
    two = load_file(str(double / "last" / "model.safetensors"))
    initial = create_model("demoe-tiny").state_dict()
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)
    trained = [key for key in one if key.startswith("decoder_moes.") and not torch.equal(one[key], initial[key])]
    assert trained
    state = torch.load(double / "checkpoints" / "step-000004" / "training_state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # Only rank 0 writes: one TensorBoard event file, one set of checkpoints.
    assert len(list((double / "tensorboard").iterdir())) == 1
    assert sorted(p.name for p in (double / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
