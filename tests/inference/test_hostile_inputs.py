"""`demoe deblur` against hostile inputs and outputs: symlink loops, escaping suffixes, files
where folders belong, unwritable reports, images larger than memory, signals mid-batch.

Every case ends with one line per problem (no traceback), the exit status of the contract
(0 done, 1 some inputs failed, 2 nothing could start, 130 interrupted), inputs untouched and no
partial or stray files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_files import huge_png
from PIL import Image

from demoe.cli import main
from demoe.imageio import read_image
from demoe.inference.memory import NotEnoughMemoryError, available_memory, parse_bytes, plan_restoration, restoration_bytes

from inference_testing import photo, quantized, tiny_model, tree_hashes


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights") / "tiny"
    tiny_model().save_pretrained(str(directory))
    return directory


def _image(path: Path, seed: int = 0, size: tuple[int, int] = (16, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(quantized(photo(*size, 3, seed=seed), np.uint8)).save(path)
    return path


def _deblur(model_dir, *args):
    return main(["deblur", *map(str, args), "--weights", str(model_dir), "--device", "cpu"])


def _interruptible() -> None:
    """preexec_fn: SIGINT at its default, so that Python installs its handler (a process started
    in the background by a non-interactive shell inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _command(model_dir, *args) -> list[str]:
    return [sys.executable, "-m", "demoe", "deblur", *map(str, args), "--weights", str(model_dir), "--device", "cpu"]


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# Inputs: links, loops, the output folder


def test_symlink_loops_with_recursive_terminate_and_are_named(tmp_path, model_dir):
    folder = tmp_path / "in"
    _image(folder / "a.png")
    _image(folder / "sub" / "b.png", seed=1)
    (folder / "self").symlink_to(".")
    (folder / "sub" / "up").symlink_to("..")
    for spec in (folder, f"{folder}/**/*.png"):
        out = tmp_path / f"out-{len(str(spec))}"
        result = subprocess.run(_command(model_dir, spec, "--recursive", "-o", out), capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
        assert written == (["a_deblurred.png", "sub/b_deblurred.png"] if spec == folder else
                           ["a_deblurred.png", "b_deblurred.png"])
        assert f"skipped: {folder / 'self'}: link to a folder already walked" in result.stderr
        assert f"skipped: {folder / 'sub' / 'up'}: link to a folder already walked" in result.stderr


def test_dangling_looping_and_duplicate_links_are_reported(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    real = _image(folder / "real.png")
    (folder / "gone.png").symlink_to("missing.png")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "again.png").symlink_to("real.png")
    outside = _image(tmp_path / "elsewhere" / "linked.png", seed=2)
    (folder / "linked.png").symlink_to(outside)
    status = _deblur(model_dir, folder, "-o", tmp_path / "out")
    err = capsys.readouterr().err
    assert status == 1
    assert f"error: {folder / 'gone.png'}: dangling symbolic link: its target missing.png does not exist" in err
    assert f"error: {folder / 'loop.png'}: symbolic link loop (loop.png -> loop.png)" in err
    assert f"skipped: {folder / 'real.png'}: same file as {folder / 'again.png'}" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["again_deblurred.png", "linked_deblurred.png"]
    assert real.is_file() and not real.is_symlink()
    capsys.readouterr()
    assert _deblur(model_dir, folder / "gone.png", "-o", tmp_path / "out2") == 2
    assert "dangling symbolic link" in capsys.readouterr().err


def test_output_folder_equal_to_the_input_folder_is_explained(tmp_path, model_dir, capsys):
    folder = tmp_path / "photos"
    _image(folder / "a.png")
    before = tree_hashes(folder)
    assert _deblur(model_dir, folder, "-o", folder) == 2
    err = capsys.readouterr().err
    assert "this folder is the output folder (-o)" in err and "holds no images" not in err
    assert tree_hashes(folder) == before


def test_suffix_cannot_escape_the_output_folder(tmp_path, model_dir, capsys):
    _image(tmp_path / "in" / "a.png")
    for suffix in ("/../../x", "_a/b", "..\x00"):
        status = _deblur(model_dir, tmp_path / "in" / "a.png", "-o", tmp_path / "deep" / "out", "--suffix", suffix)
        err = capsys.readouterr().err
        assert status == 2 and "must not contain a path separator" in err, (suffix, err)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.png"]


# ---------------------------------------------------------------------------------------------
# Outputs and reports


def test_output_folder_that_is_a_file_is_refused(tmp_path, model_dir, capsys):
    _image(tmp_path / "a.png")
    (tmp_path / "taken").write_text("a file")
    assert _deblur(model_dir, tmp_path / "a.png", "-o", tmp_path / "taken") == 2
    assert f"-o {tmp_path / 'taken'}: exists and is not a folder" in capsys.readouterr().err
    assert _deblur(model_dir, tmp_path / "a.png", "-o", tmp_path / "taken" / "out") == 2
    err = capsys.readouterr().err
    assert "lies inside" in err and "which is not a folder" in err
    assert (tmp_path / "taken").read_text() == "a file"


@pytest.mark.parametrize("where", ["below-a-file", "proc", "a-folder", "an-input"])
def test_report_in_an_unusable_place_is_refused_before_anything_runs(tmp_path, model_dir, capsys, where):
    image = _image(tmp_path / "a.png")
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    report = {"below-a-file": tmp_path / "file" / "r.jsonl", "proc": Path("/proc/demoe-report.jsonl"),
              "a-folder": tmp_path / "folder", "an-input": image}[where]
    before = image.read_bytes()
    status = _deblur(model_dir, image, "-o", tmp_path / "out", "--report", report)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    _no_traceback(err)
    assert not (tmp_path / "out").exists()
    assert image.read_bytes() == before


def test_every_input_failing_leaves_no_empty_output_folder(tmp_path, model_dir, capsys):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    assert _deblur(model_dir, tmp_path / "bad.png", tmp_path / "empty.png", "-o", tmp_path / "new" / "out") == 1
    assert "2 failed" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a folder that existed before is left as it was
    assert _deblur(model_dir, tmp_path / "bad.png", "-o", tmp_path / "kept") == 1
    assert (tmp_path / "kept").is_dir()


def test_skip_existing_redoes_empty_and_truncated_outputs(tmp_path, model_dir, capsys):
    for index in range(3):
        _image(tmp_path / "in" / f"{index}.png", seed=index)
    out = tmp_path / "out"
    assert _deblur(model_dir, tmp_path / "in", "-o", out) == 0
    complete = tree_hashes(out)
    (out / "0_deblurred.png").write_bytes(b"")
    data = (out / "1_deblurred.png").read_bytes()
    (out / "1_deblurred.png").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert _deblur(model_dir, tmp_path / "in", "-o", out, "--skip-existing") == 0
    err = capsys.readouterr().err
    assert "2 deblurred, 1 skipped" in err
    assert f"{out / '0_deblurred.png'} exists but is empty or unreadable" in err
    assert tree_hashes(out) == complete


def test_negative_max_pixels_and_bad_memory_sizes_are_usage_errors(tmp_path, model_dir, capsys):
    image = _image(tmp_path / "a.png")
    for option in (["--max-pixels", "-5"], ["--max-memory", "-1G"], ["--max-memory", "lots"]):
        with pytest.raises(SystemExit) as exit:
            _deblur(model_dir, image, "-o", tmp_path / "out", *option)
        assert exit.value.code == 2
        assert option[0] in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classify", str(image), "--max-pixels", "-1"])


def test_cost_with_a_zero_or_huge_size_is_refused(capsys):
    assert main(["cost", "--model", "demoe-tiny", "--size", "0"]) == 2
    assert "--size and --repeats must be >= 1" in capsys.readouterr().err
    assert main(["cost", "--model", "demoe-tiny", "--size", "1000000"]) == 2
    assert "a 1000000x1000000 pass needs about" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Memory


def test_memory_estimates_are_in_bytes_and_grow_with_the_image():
    config = tiny_model().config
    whole = restoration_bytes(config, 1001, 1001, 3, 1)  # padded to 1004 x 1004 (size multiple 4)
    assert whole == 3 * 1001**2 + 6 * 1001**2 + 4 * 1004 * 1004 * (11 * config.width + 16)
    tiled = restoration_bytes(config, 1001, 1001, 3, 1, tile=256)
    assert tiled == 9 * 1001**2 + 16 * 1001**2 + 2 * 4 * 260 * 260 * (11 * config.width + 16)
    assert restoration_bytes(config, 1001, 1001, 3, 1, top_k=2) > whole
    assert parse_bytes("1.5G") == int(1.5 * 2**30) and parse_bytes("512M") == 512 * 2**20 and parse_bytes("0") == 0
    with pytest.raises(NotEnoughMemoryError, match=r"100000x100000 needs about .* --tile 128"):
        plan_restoration(config, 100_000, 100_000, 3, 1, 0, 32, 1, budget=2**30)
    plan = plan_restoration(config, 4000, 4000, 3, 1, 0, 32, 1, budget=2**30)
    assert plan.auto and plan.tile in (2048, 1024, 512) and plan.needed <= 2**30
    with pytest.raises(NotEnoughMemoryError, match="with --tile 2048.*use --tile 512"):
        plan_restoration(config, 3000, 3000, 3, 1, 2048, 32, 1, budget=2**30)


def test_memory_estimate_assumes_the_models_own_top_k_when_none_is_given():
    from demoe.inference.batch import BatchOptions

    assert BatchOptions().experts_mixed(model_top_k=2) == 2  # a model whose config says top-2
    assert BatchOptions(top_k=1).experts_mixed(model_top_k=2) == 1
    assert BatchOptions(uncertain="soft").experts_mixed(model_top_k=1) == 2
    assert BatchOptions(task="defocus").experts_mixed(model_top_k=3) == 1


def test_available_memory_reads_meminfo_and_cgroup_limits(tmp_path):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "meminfo").write_text("MemTotal: 16000000 kB\nMemAvailable:    8000000 kB\n")
    (tmp_path / "proc" / "self" / "cgroup").write_text("0::/box\n")
    assert available_memory(tmp_path) == 8_000_000 * 1024
    box = tmp_path / "sys" / "fs" / "cgroup" / "box"
    box.mkdir(parents=True)
    (box / "memory.max").write_text(f"{2 * 2**30}\n")
    (box / "memory.current").write_text(f"{2**30}\n")
    (box / "memory.stat").write_text(f"anon 5\ninactive_file {2**28}\n")
    assert available_memory(tmp_path) == 2**30 + 2**28  # the container's limit is the tighter one
    (box / "memory.max").write_text("max\n")
    assert available_memory(tmp_path) == 8_000_000 * 1024
    (tmp_path / "proc" / "self" / "cgroup").write_text("4:memory:/job\n0::/\n")  # cgroup v1
    job = tmp_path / "sys" / "fs" / "cgroup" / "memory" / "job"
    job.mkdir(parents=True)
    (job / "memory.limit_in_bytes").write_text(f"{3 * 2**30}\n")
    (job / "memory.usage_in_bytes").write_text(f"{2**30}\n")
    assert available_memory(tmp_path) == 2 * 2**30
    assert available_memory(tmp_path / "nothing") is None


def test_an_image_too_large_for_memory_fails_alone_before_decoding(tmp_path, model_dir, capsys):
    huge = huge_png(tmp_path / "huge.png", 14000, 14000, channels=1)  # about 190 KB
    assert huge.stat().st_size < 300_000
    good = _image(tmp_path / "good.png")
    status = _deblur(model_dir, huge, good, "-o", tmp_path / "out", "--max-memory", "1G", "--report", tmp_path / "r.jsonl")
    err = capsys.readouterr().err
    assert status == 1
    line = next(line for line in err.splitlines() if line.startswith(f"error: {huge}:"))
    assert "14000x14000 needs about" in line and "--tile" in line and "1.0 GiB is available" in line
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_deblurred.png"]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert records[0]["input"] == str(huge) and "needs about" in records[0]["error"]


def test_an_image_too_large_for_a_whole_pass_is_tiled_with_one_note(tmp_path, model_dir, capsys):
    for index in range(2):
        _image(tmp_path / "in" / f"{index}.png", seed=index, size=(512, 512))
    status = _deblur(model_dir, tmp_path / "in", "-o", tmp_path / "auto", "--max-memory", "80M",
                     "--report", tmp_path / "r.jsonl")
    err = capsys.readouterr().err
    assert status == 0, err
    assert err.count("too large for a whole-image pass") == 1 and "256-px tiles" in err
    assert [json.loads(line)["auto_tile"] for line in (tmp_path / "r.jsonl").read_text().splitlines()] == [256, 256]
    assert _deblur(model_dir, tmp_path / "in", "-o", tmp_path / "tiled", "--tile", "256") == 0
    assert tree_hashes(tmp_path / "auto") == tree_hashes(tmp_path / "tiled")  # the same tiling, exactly
    assert _deblur(model_dir, tmp_path / "in", "-o", tmp_path / "whole", "--max-memory", "0") == 0
    assert "too large" not in capsys.readouterr().err


def test_a_memory_error_fails_that_image_only(tmp_path, model_dir, capsys, monkeypatch):
    from demoe.inference.pipeline import Deblurrer

    for index in range(3):
        _image(tmp_path / "in" / f"{index}.png", seed=index)
    real_restore = Deblurrer.restore

    def restore(self, image, **options):
        if image.sum() == first_sum:
            raise MemoryError  # what numpy and Pillow raise when an allocation fails
        return real_restore(self, image, **options)

    first_sum = read_image(tmp_path / "in" / "1.png").pixels.sum()
    monkeypatch.setattr(Deblurrer, "restore", restore)
    assert _deblur(model_dir, tmp_path / "in", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'in' / '1.png'}: out of memory while restoring it" in err and "--tile" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_deblurred.png", "2_deblurred.png"]


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux")
def test_a_real_allocation_failure_fails_that_image_only(tmp_path, model_dir):
    """A process whose address space is capped (RLIMIT_AS): the whole-image pass of the large
    image cannot be allocated; the small images before and after it are written."""
    import resource

    _image(tmp_path / "in" / "0.png")
    huge_png(tmp_path / "in" / "1.png", 6000, 6000)  # a whole pass of the tiny model: ~14 GB
    _image(tmp_path / "in" / "2.png", seed=2)

    def cap_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    result = subprocess.run(_command(model_dir, tmp_path / "in", "-o", tmp_path / "out", "--max-memory", "0"),
                            capture_output=True, text=True, timeout=600, preexec_fn=cap_address_space, env=env)
    _no_traceback(result.stderr)
    assert result.returncode == 1, result.stderr
    assert f"error: {tmp_path / 'in' / '1.png'}: out of memory while restoring it" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_deblurred.png", "2_deblurred.png"]


# ---------------------------------------------------------------------------------------------
# Signals: a real `demoe deblur` process


def _wait_for(condition, process, seconds=600):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_batch_leaves_complete_outputs_and_resumes(tmp_path, model_dir, signum):
    folder = tmp_path / "in"
    for index in range(60):
        _image(folder / f"{index:02d}.png", seed=index, size=(256, 256))
    before = tree_hashes(folder)
    out = tmp_path / "out"
    process = subprocess.Popen(_command(model_dir, folder, "-o", out, "--quiet"), stderr=subprocess.PIPE, text=True,
                               preexec_fn=_interruptible)
    _wait_for(lambda: out.is_dir() and any(p.name.endswith("_deblurred.png") for p in out.iterdir()), process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert "interrupted" in err and "--skip-existing" in err
    _no_traceback(err)
    written = sorted(p.name for p in out.iterdir())
    assert written and len(written) < 60 and all(name.endswith("_deblurred.png") for name in written)  # no temporaries
    for name in written:
        read_image(out / name)  # every output left is complete
    result = subprocess.run(_command(model_dir, folder, "-o", out, "--skip-existing"), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0 and f"{len(written)} skipped" in result.stderr
    assert len(list(out.iterdir())) == 60
    assert tree_hashes(folder) == before


def _loading_torch(process) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the process load PyTorch")
def test_ctrl_c_during_start_up_is_one_line(tmp_path, model_dir):
    """SIGINT while the command loads PyTorch (seen in /proc/PID/maps), and a moment later."""
    image = _image(tmp_path / "a.png")
    for delay in (0.0, 0.5):
        process = subprocess.Popen(_command(model_dir, image, "-o", tmp_path / "out"), stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_interruptible)
        _wait_for(lambda: _loading_torch(process), process)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
        if process.returncode == 0:  # finished before the signal on a fast machine
            continue
        assert process.returncode == 130, err
        assert "interrupted" in err
        _no_traceback(err)
