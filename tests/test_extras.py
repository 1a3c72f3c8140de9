"""Packaging: `pip install demoe` deblurs without any extra; a command whose extra is missing says
in one line which extra to install. The missing packages are simulated in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import demoe.cli.demo
from demoe.cli import main
from demoe.extras import EXTRA_OF_MODULE, extra_for, missing_extra_message

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
OPTIONAL_MODULES = sorted(EXTRA_OF_MODULE) + ["skimage"]  # scikit-image: only the tests use it

# Runs in a process where every optional package is missing (None in sys.modules makes `import`
# raise ModuleNotFoundError and importlib.util.find_spec return None, as for an absent package).
SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    for name in sys.argv[1].split(","):
        sys.modules[name] = None
    import demoe
    from demoe.cli import main

    results = {}
    for key, argv in json.loads(sys.argv[2]).items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
        results[key] = [status, err.getvalue()]
    print(json.dumps(results))
    """
)


def test_every_extra_named_in_the_code_exists_and_all_and_test_pull_them():
    extras = PYPROJECT["project"]["optional-dependencies"]
    named = set(EXTRA_OF_MODULE.values())
    assert named == {"web", "train", "eval", "onnx", "video"} and named <= set(extras)
    assert extras["all"] == [f"demoe[{','.join(sorted(named, key=list(extras).index))}]"]
    assert "demoe[all]" in extras["test"]
    core = " ".join(PYPROJECT["project"]["dependencies"])
    for package in ("gradio", "pyyaml", "tensorboard", "scipy", "matplotlib", "scikit-learn", "onnx", "av"):
        assert package not in core, f"{package} is an extra, not a core dependency"
    torch = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert ">=" in torch and "==" not in torch  # a supported range; CI installs the tested 2.13.0


def test_without_extras_demoe_deblurs_and_every_other_command_names_its_extra(tiny_weights_dir, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "out"
    commands = {
        "deblur": ["deblur", str(photo), "-o", str(out), "--weights", str(tiny_weights_dir), "--quiet"],
        "demo": ["demo", "--weights", str(tiny_weights_dir)],
        "train": ["train", str(ROOT / "configs" / "smoke.yaml"), "--out", str(tmp_path / "run")],
        "metrics": ["metrics", str(out)],
        "analyze": ["analyze", "similarity", "demoe-tiny", "demoe-tiny"],
        "export": ["export", "onnx", str(tmp_path / "m.onnx"), "--task", "auto", "--weights", str(tiny_weights_dir)],
    }
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(OPTIONAL_MODULES), json.dumps(commands)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert results["deblur"][0] == 0 and (out / "photo_deblurred.png").is_file(), results["deblur"]
    expected = {"demo": "web", "train": "train", "metrics": "eval", "analyze": "eval", "export": "onnx"}
    for command, extra in expected.items():
        status, stderr = results[command]
        assert status == 2, (command, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"demoe {command}: needs the optional package"), stderr
        assert lines[0].endswith(f"pip install 'demoe[{extra}]'"), stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.onnx").exists()  # stopped before any work


def test_the_command_translates_only_missing_optional_packages(monkeypatch, capsys):
    def needs(name):
        def handler(args):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        return handler

    monkeypatch.setattr(demoe.cli.demo, "run_demo", needs("gradio.routes"))
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == (
        "demoe demo: needs the optional package 'gradio', installed by the [web] extra: pip install 'demoe[web]'\n"
    )
    monkeypatch.setattr(demoe.cli.demo, "run_demo", needs("not_an_optional_package"))
    with pytest.raises(ModuleNotFoundError, match="not_an_optional_package"):
        main(["demo"])  # a broken install or a bug keeps its traceback
    assert extra_for(ModuleNotFoundError(name="torch")) is None
    with pytest.raises(ValueError, match="no demoe extra"):
        missing_extra_message(ModuleNotFoundError(name="torch"))
