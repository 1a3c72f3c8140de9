"""Training recipes a careless or hostile user writes: NaN, duplicate keys, broken YAML — each
refused with one line naming the key or the place, exit status 2, no run directory."""

import pytest

from demoe.cli import main
from demoe.train.config import ConfigError, load_config

GOOD = "data:\n  train:\n    manifest: m.jsonl\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + "optim:\n  lr: .nan\n", "optim.lr: expected a finite number, got nan"),
        (GOOD + "optim:\n  lr: .inf\n", "optim.lr: expected a finite number, got inf"),
        (GOOD + "loss:\n  class_weight: -.inf\n", "loss.class_weight: expected a finite number"),
        (GOOD + "optim:\n  lr: 1e-3\n  lr: 1e-2\n", "duplicate key 'lr' at line 6 (first at line 5)"),
        (GOOD + "data:\n  train:\n    manifest: other.jsonl\n", "duplicate key 'data' at line 4 (first at line 1)"),
        (GOOD + "optim: [1,\n", "not valid YAML at line 5"),
        (GOOD + "optim:\n lr: 1\n  betas: 2\n", "not valid YAML at line 6"),
    ],
)
def test_bad_recipes_are_refused_with_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(path)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, message",
    [("optim.lr=.nan", "optim.lr: expected a finite number"), ("optim.betas=[0.9,", "--set optim.betas: not valid YAML")],
)
def test_bad_overrides_are_refused(tmp_path, capsys, override, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD)
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--set", override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
