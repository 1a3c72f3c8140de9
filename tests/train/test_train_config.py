"""Training configs: strict parsing, dotted overrides, the shipped recipes."""

import copy
import dataclasses
from pathlib import Path

import pytest

from demoe.cli import main
from demoe.train.config import ConfigError, apply_override, load_config, parse_config, validate

REPO = Path(__file__).resolve().parents[2]
MANIFEST_DATA = {"train": {"manifest": "train.jsonl"}}


def test_defaults_are_the_paper_recipe():
    config = parse_config({"data": MANIFEST_DATA})
    assert config.stage == "pretrain"
    assert config.optim.lr == 1e-3 and config.optim.min_lr == 1e-7
    assert config.optim.betas == (0.9, 0.9)
    assert config.train.batch_size == 32 and config.train.epochs == 400
    assert config.data.train.crop_size == 384
    assert (config.loss.pixel_weight, config.loss.class_weight) == (1.0, 0.001)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"optim": {"learning_rate": 1e-3}}, "optim.learning_rate"),
        ({"data": {"train": {"manifest": "m.jsonl", "crop": 64}}}, "data.train.crop"),
        ({"stages": "pretrain"}, "stages"),
        ({"model": {"overrides": {"router_noise": 0.1}}}, "model.overrides.router_noise"),
    ],
)
def test_unknown_key_is_rejected_with_its_dotted_name(values, key):
    values = {"data": MANIFEST_DATA, **values}
    with pytest.raises(ConfigError, match=rf"unknown key {key}\b"):
        parse_config(values)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"train": {"batch_size": "32"}}, "train.batch_size"),
        ({"train": {"batch_size": 8.5}}, "train.batch_size"),
        ({"optim": {"betas": [0.9, "high"]}}, r"optim.betas\[1\]"),
        ({"optim": {"betas": 0.9}}, "optim.betas"),
        ({"log": {"progress": "yes"}}, "log.progress"),
        ({"stage": "finetune"}, "stage"),
        ({"data": {"train": {"manifest": 3}}}, "data.train.manifest"),
        ({"model": {"overrides": {"router_noise_std": "a lot"}}}, "model.overrides.router_noise_std"),
    ],
)
def test_wrong_type_is_rejected_with_its_dotted_name(values, key):
    values = {"data": MANIFEST_DATA, **values}
    with pytest.raises(ConfigError, match=rf"^{key}:"):
        parse_config(values)


def test_overrides_use_yaml_scalar_rules():
    values = {"data": MANIFEST_DATA}
    for override in (
        "optim.lr=2e-4",
        "optim.betas=[0.9, 0.99]",
        "train.total_steps=100",
        "log.progress=false",
        "model.overrides.router_noise_std=0.5",
        "data.val.manifest=val.jsonl",
        "data.val.split=val",
    ):
        apply_override(values, override)
    config = parse_config(values)
    assert config.optim.lr == 2e-4
    assert config.optim.betas == (0.9, 0.99)
    assert config.train.total_steps == 100
    assert config.log.progress is False
    assert config.model_config().router_noise_std == 0.5
    assert config.data.val.manifest == "val.jsonl" and config.data.val.split == "val"
    with pytest.raises(ConfigError, match="key=value"):
        apply_override(values, "optim.lr")


def test_yaml_file_reads_exponent_floats(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 5e-4\n  min_lr: 1e-7\ndata:\n  train:\n    manifest: m.jsonl\n")
    config = load_config(path, ["train.batch_size=8"])
    assert config.optim.lr == 5e-4 and config.optim.min_lr == 1e-7
    assert config.train.batch_size == 8


@pytest.mark.parametrize(
    "values, message",
    [
        ({"stage": "pretrain", "model": {"preset": "demoe-tiny"}}, "model.preset"),
        ({"stage": "experts", "model": {"preset": "nafnet-tiny-router"}}, "model.preset"),
        ({"stage": "experts", "model": {"preset": "demoe-tiny"}}, "train.trainable"),
        (
            {"stage": "experts", "model": {"preset": "demoe-tiny", "init_from": "run"}},
            "loss.class_weight",
        ),
        (
            {
                "stage": "experts",
                "model": {"preset": "demoe-tiny", "init_from": "run"},
                "loss": {"class_weight": 0.0},
                "train": {"forced_task": "rain"},
            },
            "train.forced_task",
        ),
        ({"data": {"train": {"kind": "synthetic"}}}, "data.train.photos"),
        ({"data": {"train": {"manifest": "m", "crop_size": 30}}}, "data.train.crop_size"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
    ],
)
def test_inconsistent_settings_name_the_key(values, message):
    values = {"data": MANIFEST_DATA, **values}
    with pytest.raises(ConfigError, match=message):
        parse_config(values)


def test_validate_leaves_its_argument_as_it_was():
    config = parse_config({"data": {**MANIFEST_DATA, "val": {"manifest": "val.jsonl"}},
                           "model": {"overrides": {"router_noise_std": 0.5, "width": 16}}})
    before = copy.deepcopy(config)
    overrides = config.model.overrides
    validate(config)
    assert config == before and config.model.overrides is overrides
    bad = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=0))
    bad_before = copy.deepcopy(bad)
    with pytest.raises(ConfigError, match="train.batch_size"):
        validate(bad)
    assert bad == bad_before


def test_shipped_configs_parse():
    paths = sorted((REPO / "configs").glob("*.yaml"))
    names = {path.name for path in paths}
    assert {"aioblur_stage1.yaml", "aioblur_stage2.yaml", "smoke.yaml"} <= names
    for path in paths:
        config = load_config(path)
        config.model_config()
    stage2 = load_config(REPO / "configs" / "aioblur_stage2.yaml")
    assert stage2.stage == "experts" and stage2.train.trainable == "decoder"
    assert stage2.loss.class_weight == 0.0


def test_cli_reports_the_bad_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train:\n    manifest: m.jsonl\noptim:\n  lr: fast\n")
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "optim.lr: expected a number" in capsys.readouterr().err
    path.write_text("data:\n  train:\n    manifest: m.jsonl\n")
    status = main(["train", str(path), "--out", str(tmp_path / "run"), "--set", "train.batchsize=4"])
    assert status == 2
    assert "unknown key train.batchsize" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
