"""Training on blur synthesised on the device (data.train.kind "synthetic_device"): the config,
a tiny run, and resumed runs that end with the weights of an uninterrupted one."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from demoe.data.synthetic import SyntheticBlurBatches
from demoe.train import ConfigError, parse_config, train
from demoe.train.data import build_dataset
from train_fakes import FakePairs, tiny_config

PHOTOS = str(Path(__file__).resolve().parents[2] / "src" / "demoe" / "assets" / "photos")


def device_config(**sections) -> dict:
    values = tiny_config(**sections)
    values["data"] = {"train": {"kind": "synthetic_device", "photos": PHOTOS, "crop_size": 16, "dark_scenes": 0.5}}
    values["train"] = {**values["train"], "batch_size": 5}
    return values


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_config_kind_and_its_checks():
    config = parse_config(device_config())
    assert config.data.train.kind == "synthetic_device"
    batches = build_dataset(config.data.train, seed=3, device="cpu")
    assert isinstance(batches, SyntheticBlurBatches)
    assert (len(batches), batches.crop_size, batches.config.dark_scene.probability) == (30, 16, 0.5)
    values = device_config()
    del values["data"]["train"]["photos"]
    with pytest.raises(ConfigError, match=r"data.train.photos: required when data.train.kind is 'synthetic_device'"):
        parse_config(values)
    values = device_config()
    values["data"]["val"] = {"kind": "synthetic_device", "photos": PHOTOS, "crop_size": 16}
    with pytest.raises(ConfigError, match=r"data.val.kind: 'synthetic_device' is for training"):
        parse_config(values)


def test_tiny_run_trains_on_device_batches(tmp_path):
    result = train(parse_config(device_config(train={"total_steps": 3})), tmp_path / "run", val_dataset=FakePairs(5, 16))
    assert result.step == 3 and (tmp_path / "run" / "last" / "model.safetensors").is_file()
    assert result.validation is not None and result.validation.count == 5


def test_max_steps_then_resume_matches_one_run(tmp_path):
    """The batch of a step depends on the step alone, so stopping and resuming changes nothing:
    the same weights, bit for bit, as one uninterrupted run."""
    values = device_config(train={"total_steps": 5}, log={"save_every": 10})
    whole = train(parse_config(values), tmp_path / "whole")
    first = train(parse_config(values), tmp_path / "parts", max_steps=2)
    assert (first.step, first.total_steps, whole.step) == (2, 5, 5)
    train(parse_config(values), tmp_path / "parts", resume=True)
    final, expected = weights(tmp_path / "parts" / "last"), weights(tmp_path / "whole" / "last")
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[key], expected[key]) for key in final)
    state = torch.load(tmp_path / "parts" / "checkpoints" / "step-000005" / "training_state.pt", weights_only=True)
    assert (state["step"], state["steps_per_epoch"]) == (5, 6)  # 30 items per epoch, batch 5
    # A different seed trains on other batches.
    other = train(parse_config({**values, "seed": 1}), tmp_path / "other")
    assert any(not torch.equal(weights(other.last_dir)[key], expected[key]) for key in expected)
