"""Two CPU processes under torchrun (gloo) train the same weights as one process with the
same global batch."""

import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from demoe import create_model
from demoe.train import parse_config, train
from random_weights import randomize_
from train_fakes import SCRIPT, FakePairs, subprocess_env, tiny_config


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


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    # The router gets no loss (class_weight 0): it must stay frozen, not stall DDP's reduction.
    ["loss.class_weight=0"],
    # Label routing: experts whose class is absent from a rank's sub-batch get no gradient.
    # (class_weight 0 here too: a training router draws dropout masks per process, which no
    # split of the batch reproduces; docs/training.md)
    ["stage=experts", "model.preset=demoe-tiny", "train.routing=label", "train.trainable=all",
     "model.init_from=BASELINE", "loss.class_weight=0"],
], ids=["no-class-loss", "label-routing"])
def test_smoke_config_under_torchrun_matches_one_process(tmp_path, overrides):
    """`torchrun --nproc-per-node 2 -m demoe train configs/smoke.yaml ...` ends with the
    parameters of the one-process run with the same global batch (fp32: bf16 autocast rounds
    each sub-batch differently)."""
    baseline = tmp_path / "baseline"
    randomize_(create_model("nafnet-tiny-router")).save_pretrained(str(baseline))
    overrides = [o.replace("BASELINE", str(baseline)) for o in overrides]
    common = ["configs/smoke.yaml", "--set", "train.total_steps=6", "runtime.precision=fp32",
              "log.progress=false", "log.tensorboard=false", "data.val=null", *overrides]
    single, double = tmp_path / "single", tmp_path / "double"
    one = subprocess.run([sys.executable, "-m", "demoe", "train", *common[:1], "--out", str(single), *common[1:]],
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "demoe", "train", *common[:1], "--out", str(double), *common[1:]],
                         cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    first = load_file(str(single / "last" / "model.safetensors"))
    second = load_file(str(double / "last" / "model.safetensors"))
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=0, atol=5e-4, msg=key)
