"""ONNX export: fixed-task and auto graphs agree with eager PyTorch to 1e-4; the CLI."""

import contextlib
import io
import re

import onnx
import pytest
import torch

from demoe import create_model
from demoe.cli import main
from demoe.export import OnnxDeblurModel, export_onnx, max_abs_difference

from .test_fast_layers import trained_looking_


BRIGHT = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))
DARK = BRIGHT * 0.2


def split_router_(model, first: torch.Tensor, second: torch.Tensor) -> None:
    """Set the router's last layer so that `first` goes to expert 0 and `second` to expert 4:
    logit_0 - logit_4 = 2 v . (h - midpoint) with v = h_first - h_second."""
    last = model.router.classifier[-1]
    captured = {}
    hook = last.register_forward_hook(lambda module, inputs, output: captured.update(hidden=inputs[0]))
    with torch.no_grad():
        model(torch.cat([first, second]))
        hook.remove()
        hidden_first, hidden_second = captured["hidden"]
        direction = (hidden_first - hidden_second) * 1000
        midpoint = (hidden_first + hidden_second) / 2
        last.weight.zero_()
        last.bias.zero_()
        last.weight[0], last.weight[4] = direction, -direction
        last.bias[0], last.bias[4] = -(direction @ midpoint), direction @ midpoint


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    model = trained_looking_(create_model("demoe-tiny")).eval()
    split_router_(model, BRIGHT, DARK)
    directory = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def fixed_task_export(tiny_dir, tmp_path_factory):
    """`demoe export onnx --task global_motion` at a fixed 32x48 size, through the CLI."""
    out = tmp_path_factory.mktemp("onnx") / "global_motion.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # capsys cannot see a module-scoped fixture
        status = main(["export", "onnx", str(out), "--task", "global_motion", "--weights", str(tiny_dir),
                       "--size", "32", "48"])
    return status, out, printed.getvalue()


@pytest.fixture(scope="module")
def auto_export(tiny_dir, tmp_path_factory):
    from demoe import load_model

    model = load_model(tiny_dir).eval()
    out = tmp_path_factory.mktemp("onnx") / "auto.onnx"
    export_onnx(model, out, task="auto", size=(32, 32), dynamic=True)
    return model, OnnxDeblurModel(out)


def test_cli_export_succeeds_and_reports_the_check(fixed_task_export):
    status, out, printed = fixed_task_export
    assert status == 0 and out.is_file()
    assert f"wrote {out} (expert 'global_motion' only; fixed size)" in printed
    reported = re.search(r"max \|eager - onnxruntime\| = (\S+) \(tolerance 0.0001\)", printed)
    assert reported, printed
    assert 0 <= float(reported.group(1)) <= 1e-4


def test_fixed_task_graph_holds_only_that_expert(fixed_task_export):
    _, out, _ = fixed_task_export
    graph = onnx.load(str(out)).graph
    expert_weights = [init.name for init in graph.initializer if ".experts." in init.name]
    assert expert_weights, "the chosen expert's weights are in the graph"
    assert all(".experts.1." in name for name in expert_weights)  # global_motion = expert 1


def test_fixed_task_graph_matches_eager(fixed_task_export, tiny_dir):
    from demoe import load_model

    _, out, _ = fixed_task_export
    model = load_model(tiny_dir).eval()
    runner = OnnxDeblurModel(out)
    assert runner.task == "global_motion" and not runner.dynamic and runner.config == model.config
    x = torch.rand(1, 3, 32, 48)
    with torch.inference_mode():
        expected = model(x, task="global_motion")
    got = runner(x, task="global_motion")
    torch.testing.assert_close(got.image, expected.image, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.router_probs, expected.router_probs, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.expert_weights, expected.expert_weights)
    assert got.experts_used == [["global_motion"]]


def test_fixed_task_runner_rejects_other_tasks_and_sizes(fixed_task_export):
    _, out, _ = fixed_task_export
    runner = OnnxDeblurModel(out)
    with pytest.raises(ValueError, match="exported for task 'global_motion'"):
        runner(torch.rand(1, 3, 32, 48), task="defocus")
    with pytest.raises(ValueError, match="fixed input"):
        runner(torch.rand(1, 3, 40, 48), task="global_motion")


def test_auto_graph_matches_eager_top1_on_a_mixed_batch_of_any_size(auto_export):
    model, runner = auto_export
    x = torch.cat([BRIGHT, DARK, DARK, BRIGHT])
    with torch.inference_mode():
        expected = model(x, task="auto")
    assert expected.experts_used == [["defocus"], ["low_light"], ["low_light"], ["defocus"]]
    got = runner(x, task="auto")
    torch.testing.assert_close(got.image, expected.image, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.router_probs, expected.router_probs, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.expert_weights, expected.expert_weights)
    assert got.experts_used == expected.experts_used
    assert max_abs_difference(model, runner, x) <= 1e-4


def test_export_rejects_bad_arguments(tiny_dir, tmp_path):
    from demoe import load_model

    model = load_model(tiny_dir)
    with pytest.raises(ValueError, match="unknown task 'blurry'"):
        export_onnx(model, tmp_path / "x.onnx", task="blurry")
    with pytest.raises(ValueError, match="top_k only applies"):
        export_onnx(model, tmp_path / "x.onnx", task="defocus", top_k=1)
    with pytest.raises(ValueError, match="no experts"):
        export_onnx(create_model("nafnet-tiny-router"), tmp_path / "x.onnx", task="defocus")


def test_runner_rejects_files_not_written_by_demoe(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxDeblurModel(tmp_path / "missing.onnx")
    graph = onnx.helper.make_graph([], "empty", [], [])
    onnx.save_model(onnx.helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="not written by `demoe export onnx`"):
        OnnxDeblurModel(tmp_path / "foreign.onnx")


def test_cli_reports_missing_weights(tmp_path, capsys):
    status = main(["export", "onnx", str(tmp_path / "x.onnx"), "--task", "auto", "--weights", str(tmp_path / "none")])
    assert status == 2
    assert "demoe export onnx:" in capsys.readouterr().err
