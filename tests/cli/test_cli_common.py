"""What every command shares (`demoe.cli.common`): a `CommandError` ends a command with one
line `demoe <command>: <message>` and its status; one `--top-k` check refuses the same values
with the same message in every command that takes `--top-k`; a model is `--weights` and an
output `-o/--output` everywhere, the older spellings (`--model`, `--models`, `--out`, a
positional output) still accepted with the same result."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import demoe.cli.demo
from demoe.cli import build_parser, main
from demoe.cli.common import CommandError, check_top_k
from demoe.config import get_preset
from demoe.data.manifest import PairRecord, read_manifest, write_manifest


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every runnable (sub)command, by its name without "demoe ": {"analyze cost": parser, ...}."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
                inner = _commands(command)
                found.update(inner or {command.prog.removeprefix("demoe "): command})
    return found


def _options(parser: argparse.ArgumentParser) -> dict[str, str]:
    """option string -> dest of every optional argument."""
    return {option: action.dest for action in parser._actions for option in action.option_strings}


COMMANDS = _commands(build_parser())


@pytest.fixture
def inputs(tmp_path, tiny_weights_dir) -> dict[str, str]:
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(photo)
    manifest = write_manifest(tmp_path / "m.jsonl", [PairRecord(str(photo), str(photo), "defocus", "synthetic", "test")])
    return {"weights": str(tiny_weights_dir), "photo": str(photo), "manifest": str(manifest), "out": str(tmp_path / "out")}


# ------------------------------------------------------------------------------------------
# CommandError


@pytest.mark.parametrize(
    "error, status, stderr",
    [
        (CommandError("no such thing"), 2, "demoe demo: no such thing\n"),
        (CommandError("2 of 3 inputs failed", status=1), 1, "demoe demo: 2 of 3 inputs failed\n"),
        (CommandError(None), 2, ""),  # another process of the run says why
    ],
)
def test_a_command_error_is_its_status_and_one_line_on_stderr(monkeypatch, capsys, error, status, stderr):
    def handler(args):
        raise error

    monkeypatch.setattr(demoe.cli.demo, "run_demo", handler)
    assert main(["demo"]) == status
    captured = capsys.readouterr()
    assert captured.err == stderr and captured.out == ""


@pytest.mark.parametrize(
    "argv, line",
    [
        (["cost", "--size", "0"], "demoe cost: --size and --repeats must be >= 1"),
        (["analyze", "cost", "--size", "0"], "demoe analyze cost: --size and --repeats must be >= 1"),
        (["analyze", "similarity", "demoe-tiny"], "demoe analyze similarity: give at least two model directories"),
        (["export", "onnx", "--task", "auto"],
         "demoe export onnx: OUT.onnx is required: give it as the last argument or with -o/--output OUT.onnx"),
        (["eval"], "demoe eval: --manifest is required (or --combine EVAL_DIR ...)"),
    ],
)
def test_the_message_names_the_whole_command(argv, line, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == line + "\n"


def test_every_handler_stops_through_command_error_not_print_and_return():
    """The commands' modules hold no `return 2` (nor EXIT_USAGE): a usage error is raised, and
    `main` (in __init__) is the one place that turns it into the status."""
    folder = Path(demoe.cli.__file__).parent
    for path in sorted(set(folder.glob("*.py")) - {folder / "__init__.py"}):
        text = path.read_text(encoding="utf-8")
        assert "return 2" not in text and "return EXIT_USAGE" not in text, path.name


# ------------------------------------------------------------------------------------------
# --top-k


def test_check_top_k_accepts_what_the_model_can_use():
    moe, dense = get_preset("demoe-tiny"), get_preset("nafnet-tiny-router")
    for top_k in (None, 1, 5, [1, 3, 5]):
        check_top_k(top_k, moe)
    check_top_k(9, dense)  # a model without experts ignores top-k
    for top_k, shown in ((0, 0), (6, 6), ([1, 6, 0], 6)):
        with pytest.raises(CommandError, match=rf"^--top-k must be in 1\.\.5, got {shown}$"):
            check_top_k(top_k, moe)
    with pytest.raises(CommandError, match=r"^--top-k must be >= 1, got 0$"):
        check_top_k(0, dense)
    with pytest.raises(CommandError, match=r"^--top-k must be in 1\.\.5 for demoe-tiny, got 6$"):
        check_top_k(6, moe, "demoe-tiny")


TOP_K_COMMANDS = {
    "deblur": ["deblur", "{photo}", "-o", "{out}", "--weights", "{weights}", "--device", "cpu"],
    "eval": ["eval", "--weights", "{weights}", "--manifest", "{manifest}", "--device", "cpu", "--quiet"],
    "cost": ["cost", "--weights", "{weights}", "--size", "16", "--repeats", "1"],
    "analyze cost": ["analyze", "cost", "--weights", "{weights}", "--size", "16", "--repeats", "1"],
    "export onnx": ["export", "onnx", "-o", "{out}/m.onnx", "--task", "auto", "--weights", "{weights}"],
}


def test_the_top_k_cases_cover_every_command_with_top_k():
    assert {name for name, parser in COMMANDS.items() if "--top-k" in _options(parser)} == set(TOP_K_COMMANDS)


@pytest.mark.parametrize("top_k", ["0", "6"])
@pytest.mark.parametrize("command", sorted(TOP_K_COMMANDS))
def test_every_command_refuses_a_top_k_the_model_cannot_use_with_one_message(command, top_k, inputs, capsys):
    argv = [arg.format(**inputs) for arg in TOP_K_COMMANDS[command]] + ["--top-k", top_k]
    assert main(argv) == 2
    label = f" for {Path(inputs['weights']).name}" if command.endswith("cost") else ""  # cost takes several models
    assert capsys.readouterr().err == f"demoe {command}: --top-k must be in 1..5{label}, got {top_k}\n"
    assert not Path(inputs["out"]).exists()  # refused before any output


# ------------------------------------------------------------------------------------------
# --weights


MODEL_COMMANDS = {"deblur", "classify", "eval", "cost", "analyze similarity", "analyze experts", "analyze router",
                  "analyze tsne", "analyze cost", "export onnx", "demo"}


def test_a_model_is_given_with_weights_in_every_command():
    assert {name for name, parser in COMMANDS.items() if "--weights" in _options(parser)} == MODEL_COMMANDS
    for name, parser in COMMANDS.items():
        options = _options(parser)
        for option in ("--model", "--models"):  # the older spellings exist only as aliases of --weights
            assert options.get(option, "weights") == "weights", (name, option)


@pytest.mark.parametrize("command", [["cost"], ["analyze", "cost"]])
def test_cost_takes_weights_model_and_models_alike(command):
    parser = build_parser()
    parsed = [vars(parser.parse_args([*command, option, "demoe-tiny", "nafnet-tiny-router", "--size", "32"]))
              for option in ("--weights", "--model", "--models")]
    assert parsed[0] == parsed[1] == parsed[2] and parsed[0]["weights"] == ["demoe-tiny", "nafnet-tiny-router"]


def test_cost_and_analyze_cost_are_one_command_with_one_output(capsys):
    parser = build_parser()
    top, nested = (vars(parser.parse_args([*command, "--size", "16"])) for command in (["cost"], ["analyze", "cost"]))
    assert top.pop("handler") is nested.pop("handler")
    assert {key: value for key, value in top.items() if key not in ("command", "command_name")} == {
        key: value for key, value in nested.items() if key not in ("command", "command_name", "analysis")
    }
    tables = []
    for argv in (["cost", "--model", "demoe-tiny"], ["analyze", "cost", "--weights", "demoe-tiny"]):
        assert main([*argv, "--size", "16", "--repeats", "1", "--warmup", "0", "--json"]) == 0
        table = json.loads(capsys.readouterr().out)
        table.pop("latency_ms")
        for row in table["rows"]:
            assert row.pop("latency_ms") > 0  # timing differs from run to run
        tables.append(table)
    assert tables[0] == tables[1]
    assert [row["model"] for row in tables[0]["rows"]] == ["demoe-tiny", "demoe-tiny-5 ensemble"]


def test_analyze_takes_its_models_as_arguments_or_with_weights(tiny_weights_dir, capsys):
    outputs = []
    for argv in (["analyze", "experts", str(tiny_weights_dir)], ["analyze", "experts", "--weights", str(tiny_weights_dir)]):
        assert main([*argv, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1] and outputs[0]["blocks"]
    assert main(["analyze", "similarity", str(tiny_weights_dir), "--weights", str(tiny_weights_dir)]) == 2
    assert "not both" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# -o/--output


# The arguments each command writing outputs needs besides its output.
OUTPUT_COMMANDS = {
    "deblur": ["deblur", "in.png"],
    "eval": ["eval", "--manifest", "m.jsonl"],
    "analyze similarity": ["analyze", "similarity", "a", "b"],
    "analyze experts": ["analyze", "experts", "a"],
    "analyze router": ["analyze", "router", "--weights", "w", "--manifest", "m.jsonl"],
    "analyze tsne": ["analyze", "tsne", "--weights", "w", "--manifest", "m.jsonl"],
    "data aio-blur": ["data", "aio-blur", "--root", "r"],
    "data aio-blur-ood": ["data", "aio-blur-ood", "--root", "r"],
    "data manifest": ["data", "manifest", "GoPro", "--root", "r"],
    "data synth": ["data", "synth", "sharp"],
    "export onnx": ["export", "onnx", "--task", "auto"],
    "convert-official": ["convert-official", "DeMoE.pt"],
    "train": ["train", "recipe.yaml"],
}
POSITIONAL_OUTPUT = {"data synth", "export onnx", "convert-official"}  # took the output as an argument before


def test_every_command_writing_outputs_takes_o_output_and_out():
    writing = {name for name, parser in COMMANDS.items() if "--output" in _options(parser)}
    assert writing == set(OUTPUT_COMMANDS)
    parser = build_parser()
    for name, argv in OUTPUT_COMMANDS.items():
        parsed = [vars(parser.parse_args([*argv, option, "OUT"])) for option in ("-o", "--output", "--out")]
        assert parsed[0] == parsed[1] == parsed[2] and parsed[0]["output"] == "OUT", name
        if name in POSITIONAL_OUTPUT:
            old = vars(parser.parse_args([*argv, "OUT"]))
            assert (old["positional_output"], old["output"]) == ("OUT", None), name


def _synth_tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_synth_writes_the_same_with_every_spelling_of_its_output(tmp_path, capsys):
    sharp = tmp_path / "sharp"
    sharp.mkdir()
    Image.fromarray((np.random.default_rng(1).random((24, 28, 3)) * 255).astype(np.uint8)).save(sharp / "a.png")
    for name, output in (("positional", []), ("short", ["-o"]), ("long", ["--output"]), ("old", ["--out"])):
        argv = ["data", "synth", str(sharp), *output, str(tmp_path / name), "--tasks", "defocus", "--seed", "4"]
        assert main(argv) == 0
    trees = [_synth_tree(tmp_path / name) for name in ("positional", "short", "long", "old")]
    assert trees[0] == trees[1] == trees[2] == trees[3] and len(trees[0]) == 3  # blur, sharp, manifest
    assert len(read_manifest(tmp_path / "short" / "manifest.jsonl")) == 1
    capsys.readouterr()
    assert main(["data", "synth", str(sharp), str(tmp_path / "a"), "-o", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("demoe data synth: the output is given twice:")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
