"""`torchrun --nproc-per-node 2 -m demoe deblur|classify|eval` on CPU (gloo): every input once,
outputs byte-identical to one process, one merged report with "rank", a killed run resumed."""

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
import torch
from PIL import Image

from demoe.cli import main
from demoe.config import TASK_NAMES
from demoe.data.manifest import PairRecord, write_manifest
from demoe.distributed import DistributedContext
from demoe.imageio import write_image
from demoe.inference import Deblurrer
from demoe.inference.batch import BatchOptions, InputFile, ReportWriter, find_inputs
from demoe.inference.sharding import deal, output_group, restore_inputs
from demoe.inference.video import VideoOptions

from inference_testing import photo, quantized, tiny_model, tree_hashes
from video_testing import scene_frames, write_clip

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of the two ranks gets on a two-core machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights") / "tiny"
    tiny_model().save_pretrained(str(directory))
    return directory


def _torchrun(*args, processes: int = 2, **popen) -> list[str] | subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "demoe", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    if popen:
        return subprocess.Popen(command, env=env, **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _descendants(pid: int) -> list[int]:
    """Process ids below `pid` (Linux /proc), children first."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_timing(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("rank", "seconds")}


def test_deal_gives_every_item_to_one_rank_and_keeps_same_named_outputs_together():
    items = [InputFile(Path(f"in/{name}"), Path(name)) for name in
             ["a.png", "b.png", "A.jpg", "c.png", "sub/a.png", "d.mp4", "d.mov", "e.png"]]
    items[4] = InputFile(Path("in/sub/a.png"), Path("sub/a.png"))
    for world in (1, 2, 3, 8):
        shares = [deal(items, DistributedContext(rank, rank, world, torch.device("cpu")), output_group)
                  for rank in range(world)]
        assert sorted(str(i.path) for share in shares for i in share) == sorted(str(i.path) for i in items)
        for share in shares:
            assert share == [item for item in items if item in share]  # input order kept
        owner = {str(i.path): rank for rank, share in enumerate(shares) for i in share}
        assert owner["in/a.png"] == owner["in/A.jpg"] and owner["in/d.mp4"] == owner["in/d.mov"]


def test_restore_inputs_in_one_process_tells_images_from_videos_by_content(tmp_path, model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", quantized(photo(16, 20, 3), np.uint8))
    Image.fromarray(quantized(photo(12, 14, 3, seed=1), np.uint8)).save(folder / "clip.mp4", format="PNG")
    (folder / "broken.png").write_bytes(b"not an image")
    inputs = find_inputs([str(folder)], suffixes=(".png", ".mp4"))
    out = tmp_path / "out"
    out.mkdir()
    report = ReportWriter(tmp_path / "report.jsonl")
    messages = []
    context = DistributedContext(0, 0, 1, torch.device("cpu"))
    summary = restore_inputs(inputs, out, Deblurrer(str(model_dir), device="cpu"), BatchOptions(), VideoOptions(),
                             report, context, quiet=True, say=messages.append)
    report.close()
    assert (summary.done, summary.skipped, [name for name, _ in summary.failed]) == (2, 0, [str(folder / "broken.png")])
    assert sorted(path.name for path in out.iterdir()) == ["a_deblurred.png", "clip_deblurred.png"]  # the PNG in clip.mp4
    assert [record["input"] for record in _report(tmp_path / "report.jsonl")] == [
        str(folder / name) for name in ("a.png", "broken.png", "clip.mp4")
    ]
    assert any("broken.png" in message for message in messages)


@pytest.mark.slow
def test_two_processes_deblur_like_one(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(quantized(photo(20 + index, 28, 3, seed=index), np.uint8)).save(folder / f"img{index}.png")
    write_image(folder / "deep.png", quantized(photo(18, 22, 3, seed=9), np.uint16))
    write_clip(folder / "clip.mp4", scene_frames(6, 16, 24, seed=1) + scene_frames(6, 16, 24, seed=2, brightness=0.3))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    one = main(["deblur", str(folder), "-o", str(tmp_path / "one"), "--weights", str(model_dir),
                "--device", "cpu", "--report", str(tmp_path / "one.jsonl"), "--min-shot-frames", "4"])
    assert one == 1, capsys.readouterr().err  # the broken file

    run = _torchrun("deblur", folder, "-o", tmp_path / "two", "--weights", model_dir, "--device", "cpu",
                    "--report", tmp_path / "two.jsonl", "--min-shot-frames", "4")
    assert run.returncode != 0 and "1 failed" in run.stderr and "2 processes" in run.stderr, run.stderr[-3000:]
    assert tree_hashes(tmp_path / "two") == tree_hashes(tmp_path / "one")  # byte-identical outputs
    assert len(tree_hashes(tmp_path / "one")) == 8  # 7 images and the video

    single, merged = _report(tmp_path / "one.jsonl"), _report(tmp_path / "two.jsonl")
    assert [r["input"] for r in merged] == [r["input"] for r in single]  # each input once, in order
    assert {r["rank"] for r in merged} == {0, 1}
    for a, b in zip(single, merged):
        assert _without_timing({**a, "output": a.get("output", "").replace("/one/", "/")}) == _without_timing(
            {**b, "output": b.get("output", "").replace("/two/", "/")}
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "one", "one.jsonl", "two", "two.jsonl"]  # no parts


@pytest.mark.slow
def test_a_killed_sharded_run_resumes_with_skip_existing(tmp_path, model_dir):
    """Each rank restores its images, then its video (seconds of work): the job is killed with
    SIGKILL once every image is written, in the middle of the videos, and resumed."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(8):
        Image.fromarray(quantized(photo(32, 32, 3, seed=index), np.uint8)).save(folder / f"img{index}.png")
    for name in ("film_a.mp4", "film_b.mp4"):
        write_clip(folder / name, scene_frames(24, 32, 48, seed=len(name)), audio=False)
    args = [folder, "-o", tmp_path / "two", "--weights", model_dir, "--device", "cpu", "--report", tmp_path / "r.jsonl"]
    run = _torchrun("deblur", *args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "two"

    def written() -> list[str]:
        return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None and len(written()) < 8:
        time.sleep(0.01)
    for pid in [*_descendants(run.pid), run.pid]:  # the workers run in sessions of their own
        os.kill(pid, signal.SIGKILL)  # no clean-up of any kind
    run.wait()
    done_before = written()
    assert done_before == [f"img{index}_deblurred.png" for index in range(8)], "the kill should land mid-video"

    resumed = _torchrun("deblur", *args, "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert main(["deblur", str(folder), "-o", str(tmp_path / "one"), "--weights", str(model_dir), "--device", "cpu"]) == 0
    complete = {name: digest for name, digest in tree_hashes(out).items() if not Path(name).name.startswith(".")}
    assert complete == tree_hashes(tmp_path / "one") and len(complete) == 10  # complete and byte-identical
    records = _report(tmp_path / "r.jsonl")
    assert sorted(r["input"] for r in records) == sorted(str(p) for p in folder.iterdir())  # each once
    assert sorted(Path(r["output"]).name for r in records if r.get("skipped")) == done_before
    assert not list(tmp_path.glob("r.jsonl.rank*"))


@pytest.mark.slow
def test_two_processes_classify_like_one(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(5):
        Image.fromarray(quantized(photo(24, 24, 3, seed=index), np.uint8)).save(folder / f"img{index}.png")
    write_clip(folder / "clip.mp4", scene_frames(8, 16, 24, seed=3), audio=False)
    assert main(["classify", str(folder), "--json", "--weights", str(model_dir), "--device", "cpu"]) == 0
    single = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    run = _torchrun("classify", folder, "--json", "--weights", model_dir, "--device", "cpu")
    assert run.returncode == 0, run.stderr[-3000:]
    merged = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["input"] for r in merged] == [r["input"] for r in single] and len(merged) == 6
    assert {r["rank"] for r in merged} == {0, 1}
    assert [{k: v for k, v in r.items() if k != "rank"} for r in merged] == single


@pytest.mark.slow
def test_two_processes_eval_like_one(tmp_path, model_dir):
    rng = np.random.default_rng(0)
    records = []
    for index, task in enumerate(TASK_NAMES):
        sharp = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
        blurry = np.clip(sharp.astype(int) + rng.integers(-30, 30, sharp.shape), 0, 255).astype(np.uint8)
        write_image(tmp_path / f"{task}_sharp.png", sharp)
        write_image(tmp_path / f"{task}_blur.png", blurry)
        records.append(PairRecord(str(tmp_path / f"{task}_blur.png"), str(tmp_path / f"{task}_sharp.png"), task, "synthetic", "test"))
    manifest = write_manifest(tmp_path / "manifest.jsonl", records)
    args = ["--weights", model_dir, "--manifest", manifest, "--top-k", "1", "2", "--device", "cpu", "--quiet"]
    assert main(["eval", *map(str, args), "--out", str(tmp_path / "one")]) == 0
    run = _torchrun("eval", *args, "--out", tmp_path / "two")
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("table.md", "table.csv", "table.json", "router.json"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text(), name
    single, merged = _report(tmp_path / "one" / "per_image.jsonl"), _report(tmp_path / "two" / "per_image.jsonl")
    assert len(merged) == len(single) == 10 and {r["rank"] for r in merged} == {0, 1}
    assert [_without_timing(r) for r in merged] == [_without_timing(r) for r in single]
