"""The hostile-input matrix of docs/reliability.md: every case run as a real `demoe` process.

    python benchmarks/hostile_inputs.py [--out benchmarks/results/hostile_inputs.md] [--only NAME ...]

Each case builds its inputs in a fresh folder, runs one command (`python -m demoe ...`), and
records the exit status, the line that explains it, what was written, and what was left
behind that should not be (temporary files, markers planted by checkpoint payloads, empty
folders, changed inputs). A case passes when the exit status and the line are the expected
ones and nothing is left behind. The table is printed and written as Markdown (and JSON beside
it); the process exits 1 if any case fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hostile_files import huge_png, payloads, write_torch_payload  # noqa: E402


@dataclass
class Case:
    name: str
    what: str  # the hostile input, in words
    setup: Callable[[Path, Path], list[str]]  # (case folder, model dir) -> demoe arguments
    exit: int  # expected exit status
    expect: str  # the stderr line that explains the outcome contains this
    signal_after: str | None = None  # "first-output" or "torch": send a signal then
    signum: int = signal.SIGINT
    address_space: int | None = None  # RLIMIT_AS in bytes


@dataclass
class Row:
    name: str
    what: str
    command: str
    exit: int
    expected_exit: int
    message: str
    written: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    ok: bool = False


def _image(path: Path, seed: int = 0, size: tuple[int, int] = (24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _payload(kind: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        module, name, args = payloads(folder / "MARKER")[kind]
        return write_torch_payload(folder / "DeMoE.pt", module, name, args)

    return build


def _model_copy(folder: Path, model: Path, damage: Callable[[Path], None]) -> Path:
    target = folder / "model"
    shutil.copytree(model, target)
    damage(target)
    return target


def _edit_config(key: str | None, value) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        data = json.loads((directory / "config.json").read_text())
        if key == "format_version":
            data["format_version"] = value
        else:
            data["model"][key] = value
        (directory / "config.json").write_text(json.dumps(data))

    return damage


def _truncate(directory: Path) -> None:
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _not_json(directory: Path) -> None:
    (directory / "config.json").write_text('{"format_version": 1, "model": {')


def _deblur(*args: str | Path) -> list[str]:
    return ["deblur", *map(str, args)]


def _loops(folder: Path) -> Path:
    _image(folder / "in" / "a.png")
    _image(folder / "in" / "sub" / "b.png", 1)
    (folder / "in" / "self").symlink_to(".")
    (folder / "in" / "sub" / "up").symlink_to("..")
    return folder / "in"


def _recipe(folder: Path, text: str) -> Path:
    (folder / "recipe.yaml").write_text("data:\n  train:\n    manifest: m.jsonl\n" + text)
    return folder / "recipe.yaml"


def _planted_training_state(folder: Path, model: Path) -> list[str]:
    from demoe.data.manifest import PairRecord, write_manifest

    records = []
    for index in range(2):
        _image(folder / f"blur{index}.png", index, (32, 32))
        _image(folder / f"sharp{index}.png", index + 2, (32, 32))
        records.append(PairRecord(str(folder / f"blur{index}.png"), str(folder / f"sharp{index}.png"), "defocus",
                                  "synthetic", "train"))
    write_manifest(folder / "m.jsonl", records)
    (folder / "recipe.yaml").write_text(
        "stage: experts\nmodel:\n  preset: demoe-tiny\ndata:\n  train:\n    manifest: m.jsonl\n    crop_size: 16\n"
        "train:\n  trainable: all\n  batch_size: 2\n  num_workers: 0\n  total_steps: 4\n"
        "log:\n  tensorboard: false\n  progress: false\n"
    )
    step = folder / "run" / "checkpoints" / "step-000001"
    shutil.copytree(model, step)
    step.joinpath("training_state.pt").write_bytes(_payload("fx-exec")(folder).read_bytes())
    (folder / "DeMoE.pt").unlink()
    return ["train", str(folder / "recipe.yaml"), "--out", str(folder / "run"), "--resume"]


def _eval_case(folder: Path, model: Path) -> list[str]:
    from demoe.data.manifest import PairRecord, write_manifest

    _image(folder / "blur.png")
    _image(folder / "sharp.png")
    write_manifest(folder / "m.jsonl", [PairRecord(str(folder / "blur.png"), str(folder / "sharp.png"), "defocus",
                                                   "synthetic", "test")])
    return ["eval", "--weights", str(model), "--manifest", str(folder / "m.jsonl"), "--device", "cpu", "--quiet",
            "--json", "--musiq-weights", str(_payload("fx-exec")(folder))]


def _skip_existing(folder: Path, model: Path) -> list[str]:
    _image(folder / "in" / "a.png")
    (folder / "out").mkdir()
    (folder / "out" / "a_deblurred.png").write_bytes(b"")
    return _deblur(folder / "in", "-o", folder / "out", "--skip-existing")


def _equal_folders(folder: Path, model: Path) -> list[str]:
    _image(folder / "photos" / "a.png")
    return _deblur(folder / "photos", "-o", folder / "photos")


def _batch(folder: Path, model: Path) -> list[str]:
    for index in range(60):
        _image(folder / "in" / f"{index:02d}.png", index, (256, 256))
    return _deblur(folder / "in", "-o", folder / "out", "--quiet")


CASES = [
    # ---- checkpoint files that would run code (item 1)
    Case("ckpt-fx-exec", "DeMoE.pt whose pickle calls torch.fx.graph_module._exec_with_source (runs Python)",
         lambda f, m: ["convert-official", str(_payload("fx-exec")(f)), str(f / "out")], 2,
         "torch.fx.graph_module._exec_with_source"),
    Case("ckpt-torch-save", "DeMoE.pt whose pickle calls torch.serialization.save (writes a file)",
         lambda f, m: ["convert-official", str(_payload("torch-save")(f)), str(f / "out")], 2,
         "torch.serialization.save"),
    Case("ckpt-torch-load", "DeMoE.pt whose pickle calls torch.serialization.load",
         lambda f, m: ["convert-official", str(_payload("torch-load")(f)), str(f / "out")], 2,
         "torch.serialization.load"),
    Case("ckpt-hub-download", "DeMoE.pt whose pickle calls torch.hub.download_url_to_file",
         lambda f, m: ["convert-official", str(_payload("hub-download")(f)), str(f / "out")], 2,
         "torch.hub.download_url_to_file"),
    Case("ckpt-os-via-torch", "DeMoE.pt naming os.system through torch.serialization.os",
         lambda f, m: ["convert-official", str(_payload("os-via-torch")(f)), str(f / "out")], 2,
         "torch.serialization.os.system"),
    Case("ckpt-builtins-exec", "DeMoE.pt whose pickle calls builtins.exec",
         lambda f, m: ["convert-official", str(_payload("builtins-exec")(f)), str(f / "out")], 2, "builtins.exec"),
    Case("musiq-fx-exec", "demoe metrics --musiq-weights with the _exec_with_source payload",
         lambda f, m: ["metrics", str(_image(f / "r" / "a.png").parent), "--musiq-weights", str(_payload("fx-exec")(f))],
         2, "MUSIQ skipped"),
    Case("lpips-torch-save", "demoe metrics --lpips-backbone with the torch.serialization.save payload",
         lambda f, m: ["metrics", str(_image(f / "r" / "a.png").parent), str(f / "r"), "--lpips", "alex",
                       "--lpips-backbone", str(_payload("torch-save")(f))], 0, "LPIPS skipped"),
    Case("eval-musiq-fx-exec", "demoe eval --musiq-weights with the _exec_with_source payload", _eval_case, 0,
         "MUSIQ skipped"),
    Case("resume-planted-state", "demoe train --resume with a training_state.pt replaced by a payload",
         _planted_training_state, 2, "refusing to load it"),
    # ---- model directories and configs (item 4)
    Case("weights-truncated", "model.safetensors cut to half its size",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--weights", _model_copy(f, m, _truncate)), 2,
         "truncated or damaged"),
    Case("config-wrong-type", 'config.json with "width": "8" (a string)',
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--weights",
                              _model_copy(f, m, _edit_config("width", "8"))), 2, "width: expected an integer"),
    Case("config-format-version", "config.json with format_version 2",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--weights",
                              _model_copy(f, m, _edit_config("format_version", 2))), 2, "format_version 2 is not"),
    Case("weights-shape-mismatch", "config.json saying width 16 for width-8 weights",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--weights",
                              _model_copy(f, m, _edit_config("width", 16))), 2, "does not match the architecture"),
    Case("config-not-json", "config.json cut in the middle",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--weights", _model_copy(f, m, _not_json)), 2,
         "not valid JSON"),
    Case("train-yaml-syntax", "training recipe with a YAML syntax error",
         lambda f, m: ["train", str(_recipe(f, "optim: [1,\n")), "--out", str(f / "run")], 2, "not valid YAML at line"),
    Case("train-lr-nan", "training recipe with lr: .nan",
         lambda f, m: ["train", str(_recipe(f, "optim:\n  lr: .nan\n")), "--out", str(f / "run")], 2,
         "optim.lr: expected a finite number"),
    Case("train-duplicate-key", "training recipe giving optim.lr twice",
         lambda f, m: ["train", str(_recipe(f, "optim:\n  lr: 1e-3\n  lr: 1e-2\n")), "--out", str(f / "run")], 2,
         "duplicate key 'lr'"),
    Case("max-pixels-negative", "demoe deblur --max-pixels -5",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--max-pixels", "-5"), 2, "must be >= 0"),
    Case("cost-size-zero", "demoe cost --size 0", lambda f, m: ["cost", "--model", "demoe-tiny", "--size", "0"], 2,
         "--size and --repeats must be >= 1"),
    # ---- memory (item 2)
    Case("huge-png-refused", "14000x14000 gray PNG (190 KB) with --max-memory 1G, then a normal image",
         lambda f, m: _deblur(huge_png(f / "huge.png", 14000, 14000, 1), _image(f / "good.png"), "-o", f / "out",
                              "--max-memory", "1G"), 1, "14000x14000 needs about"),
    Case("auto-tile", "two 512x512 images with --max-memory 80M (a whole pass needs ~110 MB)",
         lambda f, m: _deblur(_image(f / "in" / "a.png", 0, (512, 512)), _image(f / "in" / "b.png", 1, (512, 512)),
                              "-o", f / "out", "--max-memory", "80M"), 0, "256-px tiles"),
    Case("allocation-fails", "6000x6000 image whole (--max-memory 0) in a process capped at 6 GiB of address space",
         lambda f, m: _deblur(_image(f / "in" / "0.png"), huge_png(f / "in" / "1.png", 6000, 6000),
                              _image(f / "in" / "2.png", 2), "-o", f / "out", "--max-memory", "0"), 1,
         "out of memory while restoring it", address_space=6 * 2**30),
    Case("bomb-over-limit", "20000x20000 gray PNG (about 400 KB): over the 200-megapixel limit",
         lambda f, m: _deblur(huge_png(f / "bomb.png", 20000, 20000, 1), "-o", f / "out"), 1,
         "exceeds the limit of 200,000,000"),
    # ---- inputs and outputs (item 3)
    Case("symlink-loops-folder", "--recursive over a folder with self -> . and sub/up -> ..",
         lambda f, m: _deblur(_loops(f), "--recursive", "-o", f / "out"), 0, "link to a folder already walked"),
    Case("symlink-loops-glob", "'in/**/*.png' --recursive over the same loops",
         lambda f, m: _deblur(f"{_loops(f)}/**/*.png", "--recursive", "-o", f / "out"), 0,
         "link to a folder already walked"),
    Case("dangling-link", "a folder holding gone.png -> missing.png next to a good image",
         lambda f, m: (_image(f / "in" / "a.png"), (f / "in" / "gone.png").symlink_to("missing.png"),
                       _deblur(f / "in", "-o", f / "out"))[-1], 1, "dangling symbolic link"),
    Case("self-link", "a folder holding loop.png -> loop.png next to a good image",
         lambda f, m: (_image(f / "in" / "a.png"), (f / "in" / "loop.png").symlink_to("loop.png"),
                       _deblur(f / "in", "-o", f / "out"))[-1], 1, "symbolic link loop"),
    Case("suffix-escapes", '--suffix "/../../x"',
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "deep" / "out", "--suffix", "/../../x"), 2,
         "must not contain a path separator"),
    Case("output-is-a-file", "-o naming an existing file",
         lambda f, m: ((f / "taken").write_text("x"), _deblur(_image(f / "a.png"), "-o", f / "taken"))[-1], 2,
         "exists and is not a folder"),
    Case("output-equals-input", "-o equal to the input folder", _equal_folders, 2,
         "this folder is the output folder (-o)"),
    Case("report-in-proc", "--report /proc/demoe-report.jsonl (cannot be created)",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--report", "/proc/demoe-report.jsonl"), 2,
         "cannot write"),
    Case("report-below-a-file", "--report inside a path that is a file",
         lambda f, m: ((f / "file").write_text("x"), _deblur(_image(f / "a.png"), "-o", f / "out", "--report",
                                                              f / "file" / "r.jsonl"))[-1], 2, "is not a folder"),
    Case("report-is-an-input", "--report naming the input image",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out", "--report", f / "a.png"), 2,
         "is an input of this run"),
    Case("skip-existing-empty", "--skip-existing with a 0-byte output in place", _skip_existing, 0,
         "exists but is empty or unreadable"),
    Case("all-inputs-fail", "two broken files into a new -o folder",
         lambda f, m: ((f / "bad.png").write_bytes(b"not an image"), (f / "empty.png").write_bytes(b""),
                       _deblur(f / "bad.png", f / "empty.png", "-o", f / "new" / "out"))[-1], 1, "2 failed"),
    Case("ctrl-c-start-up", "Ctrl-C while the command loads PyTorch",
         lambda f, m: _deblur(_image(f / "a.png"), "-o", f / "out"), 130, "interrupted", signal_after="torch"),
    Case("sigint-mid-batch", "Ctrl-C after the first of 60 outputs", _batch, 130, "interrupted",
         signal_after="first-output"),
    Case("sigterm-mid-batch", "SIGTERM after the first of 60 outputs", _batch, 130, "interrupted",
         signal_after="first-output", signum=signal.SIGTERM),
]


def _snapshot(folder: Path) -> dict[str, str]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        files[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _left_behind(folder: Path, before: dict[str, str], after: dict[str, str]) -> list[str]:
    inputs = [name for name in before if not name.startswith("out/")]  # out/ holds outputs, rewritten on purpose
    left = [f"changed input {name}" for name in inputs if name in after and after[name] != before[name]]
    left += [f"removed input {name}" for name in inputs if name not in after]
    left += [f"temporary {name}" for name in after if name not in before and Path(name).name.startswith(".")]
    left += [f"payload ran: {name}" for name in after if Path(name).name.startswith("MARKER")]
    left += [f"empty folder {path.relative_to(folder)}" for path in folder.rglob("*")
             if path.is_dir() and not path.is_symlink() and not any(path.iterdir())]
    return left


def _loading_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def run_case(case: Case, root: Path, model: Path) -> Row:
    folder = root / case.name
    folder.mkdir()
    argv = case.setup(folder, model)
    if argv[0] in ("deblur", "classify", "eval", "demo") and "--weights" not in argv:
        argv += ["--weights", str(model)]
    if argv[0] == "deblur" and "--device" not in argv:
        argv += ["--device", "cpu"]
    before = _snapshot(folder)
    command = [sys.executable, "-m", "demoe", *argv]
    limit = case.address_space

    def cap() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # not ignored, even when this script runs in the background
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, preexec_fn=cap)
    if case.signal_after:
        out = folder / "out"
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            if case.signal_after == "torch" and _loading_torch(process.pid):
                break
            if case.signal_after == "first-output" and out.is_dir() and any(out.glob("*_deblurred.png")):
                break
            time.sleep(0.02)
        process.send_signal(case.signum)
    _, err = process.communicate(timeout=1800)
    after = _snapshot(folder)
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    message = next((line for line in lines if case.expect in line), lines[0] if lines else "")
    if case.name.startswith("ckpt") and (folder / "MARKER").exists():
        message += " (payload ran!)"
    written = [name for name in after if name not in before and not Path(name).name.startswith(".")]
    left = _left_behind(folder, before, after)
    if "Traceback" in err:
        left.append("a traceback")
    shown = " ".join(a if len(a) < 60 else "..." + a[-40:] for a in argv).replace(str(folder) + "/", "")
    row = Row(case.name, case.what, f"demoe {shown}", process.returncode, case.exit,
              message.replace(str(folder) + "/", "")[:300], written, left)
    row.ok = row.exit == case.exit and case.expect in message and not left
    return row


def _summarise(names: list[str], limit: int = 4) -> str:
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def to_markdown(rows: list[Row]) -> str:
    lines = ["| case | input | exit | message | written | left behind | ok |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        message = row.message.replace("|", "\\|")
        lines.append(f"| {row.name} | {row.what} | {row.exit} | {message} | {_summarise(row.written)} | "
                     f"{_summarise(row.left)} | {'yes' if row.ok else 'NO (expected exit ' + str(row.expected_exit) + ')'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hostile_inputs.md"))
    parser.add_argument("--only", nargs="+", default=None, help="run only these cases")
    args = parser.parse_args()
    import demoe

    cases = [case for case in CASES if args.only is None or case.name in args.only]
    with tempfile.TemporaryDirectory(prefix="demoe-hostile-") as temporary:
        root = Path(temporary)
        torch.manual_seed(0)
        model = root / "tiny-model"
        demoe.create_model("demoe-tiny").save_pretrained(str(model))
        rows = []
        for case in cases:
            start = time.perf_counter()
            rows.append(run_case(case, root, model))
            print(f"{case.name}: exit {rows[-1].exit}, {'ok' if rows[-1].ok else 'FAILED'} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    table = to_markdown(rows)
    print(table)
    if args.only is None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
        Path(args.out).with_suffix(".json").write_text(json.dumps([asdict(row) for row in rows], indent=1) + "\n")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
