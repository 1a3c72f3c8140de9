"""Checkpoint files whose pickle calls torch functions (or others): refused by name everywhere a
.pt/.pth is read, and nothing they ask for is run or written.

Each payload's effect is real: loaded with trust=True, the code-running ones create their marker
file (checked below), so a refusal that lets the call through cannot pass these tests.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from hostile_files import payloads, write_torch_payload
from PIL import Image

from demoe.checkpoints import (
    CheckpointReadError,
    UntrustedCheckpointError,
    convert_official,
    is_allowed_global,
    load_official_checkpoint,
    load_torch_file,
)
from demoe.cli import main

NAMES = list(payloads(__import__("pathlib").Path("marker")))


@pytest.fixture
def payload(tmp_path, request):
    """(payload file, marker path, dotted global it names)."""
    marker = tmp_path / "marker"
    module, name, args = payloads(marker)[request.param]
    path = write_torch_payload(tmp_path / f"{request.param}.pt", module, name, args)
    return path, marker, f"{module}.{name}"


def _refused(message: str, marker, global_name: str) -> None:
    assert global_name in message
    assert not marker.exists(), "the pickled call ran"
    assert not marker.with_suffix(".pt").exists()


@pytest.mark.parametrize("name", ["fx-exec", "torch-save"])
def test_the_payloads_really_act_when_trusted(tmp_path, name):
    marker = tmp_path / "marker"
    module, function, args = payloads(marker)[name]
    path = write_torch_payload(tmp_path / "p.pt", module, function, args)
    load_torch_file(path, trust=True)
    assert marker.exists()


@pytest.mark.parametrize("payload", NAMES, indirect=True)
def test_python_apis_refuse_by_name(payload, tmp_path):
    from demoe.evaluation.lpips import load_lpips
    from demoe.evaluation.musiq import MUSIQWeightsError, load_musiq

    path, marker, global_name = payload
    for load, error_type in (
        (load_torch_file, UntrustedCheckpointError),
        (load_official_checkpoint, UntrustedCheckpointError),
        (lambda p: convert_official(p, tmp_path / "out", preset="demoe-tiny"), UntrustedCheckpointError),
        (load_musiq, MUSIQWeightsError),
        (lambda p: load_lpips("alex", p), CheckpointReadError),
    ):
        with pytest.raises(error_type) as error:
            load(path)
        _refused(str(error.value), marker, global_name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("payload", NAMES, indirect=True)
def test_convert_official_refuses_and_writes_nothing(payload, tmp_path, capsys):
    path, marker, global_name = payload
    assert main(["convert-official", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trust-checkpoint" in err
    _refused(err, marker, global_name)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def restored_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("restored")
    pixels = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("payload", ["fx-exec", "torch-save", "os-via-torch"], indirect=True)
def test_metrics_musiq_and_lpips_weights_are_refused(payload, restored_dir, tmp_path, capsys):
    path, marker, global_name = payload
    assert main(["metrics", str(restored_dir), "--musiq-weights", str(path)]) == 2
    err = capsys.readouterr().err
    assert "MUSIQ skipped" in err and "no metric left" in err
    _refused(err, marker, global_name)
    status = main(["metrics", str(restored_dir), str(restored_dir), "--lpips", "alex", "--lpips-backbone", str(path), "--json"])
    captured = capsys.readouterr()
    assert status == 0 and "LPIPS skipped" in captured.err
    assert "lpips" in json.loads(captured.out)["skipped"]
    _refused(captured.err, marker, global_name)


@pytest.mark.parametrize("payload", ["fx-exec"], indirect=True)
def test_eval_musiq_weights_are_refused(payload, tiny_weights_dir, tmp_path, capsys):
    from demoe.data.manifest import PairRecord, write_manifest

    path, marker, global_name = payload
    image = (np.random.default_rng(1).random((24, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "blur.png")
    Image.fromarray(image).save(tmp_path / "sharp.png")
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [PairRecord(str(tmp_path / "blur.png"), str(tmp_path / "sharp.png"), "defocus", "synthetic", "test")],
    )
    argv = ["eval", "--weights", str(tiny_weights_dir), "--manifest", str(manifest), "--device", "cpu",
            "--quiet", "--json", "--musiq-weights", str(path)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "MUSIQ skipped" in err
    _refused(err, marker, global_name)


@pytest.mark.parametrize("payload", ["fx-exec", "torch-save"], indirect=True)
def test_resuming_from_a_planted_training_state_is_refused(payload, tmp_path):
    from demoe.checkpoints import save_pretrained
    from demoe.checkpoints import create_model
    from demoe.train.checkpointing import STATE_FILE, load_checkpoint

    path, marker, global_name = payload
    step = tmp_path / "run" / "checkpoints" / "step-000001"
    save_pretrained(create_model("demoe-tiny"), step)
    step.joinpath(STATE_FILE).write_bytes(path.read_bytes())
    with pytest.raises(CheckpointReadError) as error:
        load_checkpoint(step)
    assert "refusing" in str(error.value)
    assert not marker.exists()


def test_real_checkpoint_leftovers_still_load(tmp_path):
    """What training scripts save beside the weights loads without trust: numpy scalars and
    arrays, argparse options, torch.__version__, tensors of every common dtype."""
    content = {
        "params": {"w": torch.randn(2, 3), "h": torch.zeros(2, dtype=torch.float16), "i": torch.tensor(7)},
        "best_psnr": np.float64(31.5),
        "curve": np.arange(3.0),
        "steps": np.int64(12),
        "args": argparse.Namespace(lr=1e-3, name="x"),
        "torch_version": torch.__version__,
        "size": torch.Size([2, 3]),
    }
    torch.save(content, tmp_path / "leftovers.pt")
    loaded = load_torch_file(tmp_path / "leftovers.pt")
    torch.testing.assert_close(loaded["params"]["w"], content["params"]["w"])
    assert loaded["best_psnr"] == 31.5 and loaded["args"].lr == 1e-3 and loaded["torch_version"] == torch.__version__
    np.testing.assert_array_equal(loaded["curve"], content["curve"])


def test_the_allow_list_is_exact():
    assert is_allowed_global("argparse.Namespace")
    assert is_allowed_global("numpy.dtypes.Float64DType")
    for name in ("torch.serialization.save", "torch.fx.graph_module._exec_with_source", "torch.hub.load",
                 "numpy.dtypes.os", "argparse.ArgumentParser", "collections.OrderedDict.fromkeys", "torch.load"):
        assert not is_allowed_global(name), name
