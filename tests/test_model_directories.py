"""Damaged or foreign model directories: one short, specific message and exit status 2 from
every command that loads weights, a specific error from the API."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

import demoe
from demoe.checkpoints import CheckpointMismatchError, ModelDirectoryError
from demoe.cli import main


@pytest.fixture
def model_dir(tmp_path, tiny_weights_dir):
    directory = tmp_path / "model"
    shutil.copytree(tiny_weights_dir, directory)
    return directory


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    return path


def _edit_config(directory, change):
    path = directory / "config.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _truncate(directory):
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _wrong_type(directory):
    _edit_config(directory, lambda data: data["model"].update(width="8"))


def _unknown_version(directory):
    _edit_config(directory, lambda data: data.update(format_version=2))


def _other_architecture(directory):
    _edit_config(directory, lambda data: data["model"].update(width=16))  # weights stay width 8


def _not_json(directory):
    (directory / "config.json").write_text('{"format_version": 1, "model": {')


CASES = {
    "truncated-weights": (_truncate, ModelDirectoryError, "not a readable safetensors file, truncated or damaged"),
    "wrong-type": (_wrong_type, ModelDirectoryError, "width: expected an integer, got str '8'"),
    "unknown-format-version": (_unknown_version, ModelDirectoryError, "format_version 2 is not one this demoe reads"),
    "shape-mismatch": (_other_architecture, CheckpointMismatchError, "does not match the architecture of its config.json"),
    "invalid-json": (_not_json, ModelDirectoryError, "not valid JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_model_raises_a_specific_error(model_dir, case):
    damage, error_type, message = CASES[case]
    damage(model_dir)
    with pytest.raises(error_type, match=message.replace("(", r"\(").replace(")", r"\)")):
        demoe.load_model(model_dir)


@pytest.mark.parametrize("case", list(CASES))
def test_deblur_exits_2_with_one_short_message(model_dir, photo, tmp_path, case, capsys):
    damage, _, message = CASES[case]
    damage(model_dir)
    status = main(["deblur", str(photo), "-o", str(tmp_path / "out"), "--weights", str(model_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) <= 6 and len(err) < 800, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["classify", "{photo}", "--weights", "{model}", "--device", "cpu"],
        ["cost", "--model", "{model}", "--repeats", "1", "--size", "16"],
        ["export", "onnx", "{out}/m.onnx", "--task", "defocus", "--weights", "{model}"],
        ["analyze", "experts", "{model}"],
    ],
)
def test_other_commands_exit_2_on_a_damaged_directory(model_dir, photo, tmp_path, argv, capsys):
    _truncate(model_dir)
    filled = [a.format(photo=photo, model=model_dir, out=tmp_path) for a in argv]
    try:
        status = main(filled)
    except SystemExit as exit:  # argparse: the command's arguments changed
        pytest.fail(f"usage error for {filled}: {exit}")
    err = capsys.readouterr().err
    assert status == 2 and "truncated or damaged" in err and "Traceback" not in err


def test_wrong_values_in_config_json_are_refused(model_dir):
    for change, message in (
        (lambda data: data["model"].update(width=0), "width must be >= 1"),
        (lambda data: data["model"].update(encoder_blocks="11"), "encoder_blocks: expected a list"),
        (lambda data: data["model"].update(router=1), "router: expected true or false"),
        (lambda data: data["model"].update(router_dropout=float("nan")), "router_dropout: expected a finite number"),
        (lambda data: data.pop("format_version"), "format_version None"),
    ):
        shutil.copy(model_dir / "config.json", model_dir / "config.json.bak")
        _edit_config(model_dir, change)
        with pytest.raises(ModelDirectoryError, match=message):
            demoe.load_model(model_dir)
        shutil.move(model_dir / "config.json.bak", model_dir / "config.json")
    demoe.load_model(model_dir)  # the untouched directory loads
