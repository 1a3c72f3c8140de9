"""Package gated weights as the bundled default model directory (issue 16, issue 15 item 5).

    python benchmarks/ship_weights.py GATE_OUT --train-crop 128 --trained "2026-12-02: ..." \
        [--into src/demoe/weights/default]

GATE_OUT is the `--out` folder of a `benchmarks/gate.py --fp16` run that PASSED: its
`gate.json` must say so, and its `fp16/` folder (the float16 copy that was gated) is what ships.
The bundled folder gets

- `model.safetensors`: the gated float16 weights, byte for byte;
- `config.json`: the model config with `train_crop` (TLC's window comes from it) and, under
  "extra", the stage and step of the run, what trained it (`--trained`) and the gate's summary;
  no path of the machine it was trained on;
- `LICENSE`: the weights' research-only licence (the code is MIT, the weights are not);
- `README.md`: a short card, with the gate's numbers, pointing to docs/model-card.md;
- `SHA256SUMS`: sha256 of the three other files (`sha256sum -c SHA256SUMS` checks them).

The folder is written beside the target and swapped in, so a failure leaves the shipped weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from safetensors import safe_open

from demoe.checkpoints import CONFIG_FILE, WEIGHTS_FILE, read_config

LICENSE_FILE = "LICENSE"
CARD_FILE = "README.md"
CHECKSUM_FILE = "SHA256SUMS"
CHECKSUMMED = (WEIGHTS_FILE, CONFIG_FILE, LICENSE_FILE, CARD_FILE)
DTYPE_NAMES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}

WEIGHTS_LICENSE = """\
demoe default weights -- research and educational use only

These model weights (model.safetensors in this folder) are NOT covered by the MIT licence of the
demoe source code. They were trained on photographs whose licences restrict their use:

- BSD200 and BSD100 (the Berkeley Segmentation Dataset, BSDS300; Corel images): free for
  non-commercial research and educational use;
- Urban100, Set5 and Set14: licence not stated by their publishers.

You may use, copy and share these weights, and outputs made with them, for non-commercial
research and educational purposes only. For any other use, train your own weights on data you
may use for it (demoe train, docs/training.md) or load the DeMoE authors' weights under their
terms (demoe convert-official).

THE WEIGHTS ARE PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
"""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(directory: Path) -> str:
    """`sha256sum` format: one `<hex>  <name>` line per file."""
    return "".join(f"{sha256(directory / name)}  {name}\n" for name in CHECKSUMMED)


def gate_summary(report: dict) -> dict:
    """What the bundled config keeps of a gate report: per-group gains, router accuracy, real pairs."""
    candidate = report["candidate"]
    validation = candidate["validation"]
    return {
        "passed": report["passed"],
        "validation_images": validation["count"],
        "mean_psnr_db": round(validation["mean_psnr"], 3),
        "mean_input_psnr_db": round(validation["mean_input_psnr"], 3),
        "gain_db": {group: round(values["gain"], 3) for group, values in validation["groups"].items()},
        "router_accuracy": validation["router_accuracy"],
        "router_accuracy_4way": validation["router_accuracy_4way"],
        "real_pairs_gain_db": {name: round(values["gain"], 3) for name, values in candidate["real"]["groups"].items()},
    }


def stored_dtype(weights: Path) -> str:
    """The floating-point dtype the weights file stores (e.g. "F16")."""
    with safe_open(str(weights), framework="pt") as file:
        dtypes = {str(file.get_slice(name).get_dtype()) for name in file.keys()}
    floating = sorted(dtypes & {"F16", "BF16", "F32", "F64"})
    return "/".join(floating) or "none"


def card(config: dict, gate: dict | None, dtype: str) -> str:
    model = config["model"]
    extra = config.get("extra", {})
    lines = [
        f"# demoe default weights ({model['name']})",
        "",
        "The weights `demoe deblur`, `demoe.load_model()` and `demoe demo` use when no others are named.",
        "Full model card, recipe and learning curve: docs/model-card.md in the demoe repository.",
        "",
        f"- architecture: DeMoE preset `{model['name']}`, {model['num_experts']} experts per MoE block, "
        f"top-{model['top_k']} routing; experts: {', '.join(model['task_names'])}",
        f"- training crop: {model['train_crop']} x {model['train_crop']} px (TLC, `--tlc`, uses it)",
        f"- trained: {extra.get('trained', 'see docs/model-card.md')}",
        "- data: synthetic blur of the train split of BSD200, BSD100, Urban100, Set5, Set14",
        f"- stored as {DTYPE_NAMES.get(dtype, dtype)} safetensors (loaded as float32)",
        "- licence: research and educational use only (LICENSE); the demoe code is MIT",
        "- integrity: `sha256sum -c SHA256SUMS`",
    ]
    if gate is not None:
        gains = ", ".join(f"{group} {gain:+.2f}" for group, gain in gate["gain_db"].items())
        real = ", ".join(f"{name} {gain:+.2f}" for name, gain in gate["real_pairs_gain_db"].items())
        lines += [
            "",
            "## Gate (benchmarks/gate.py, held-out Kodak24 + McMaster and real pairs; never trained on)",
            "",
            f"- {gate['validation_images']} validation images: mean {gate['mean_psnr_db']:.2f} dB "
            f"(blurry input {gate['mean_input_psnr_db']:.2f} dB)",
            f"- gain over the blurry input, dB: {gains}",
            f"- router accuracy: {gate['router_accuracy']:.1%} (4-way, camera motion merged: "
            f"{gate['router_accuracy_4way']:.1%})",
            f"- real blurry/sharp pairs, gain in dB: {real}",
        ]
    return "\n".join(lines) + "\n"


def package(model_dir: Path, into: Path, train_crop: int, trained: str, gate: dict | None) -> Path:
    """Write the bundled model directory `into` from the model directory `model_dir`."""
    model_config = read_config(model_dir).replace(train_crop=train_crop)  # checks every field
    source = json.loads((model_dir / CONFIG_FILE).read_text())
    source_extra = source.get("extra", {})
    extra = {key: source_extra[key] for key in ("stage", "weights", "step") if key in source_extra}
    extra["trained"] = trained
    if gate is not None:
        extra["gate"] = gate
    config = {"format_version": source["format_version"], "model": model_config.to_dict(), "extra": extra}

    staging = into.with_name(f".{into.name}.shipping")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(model_dir / WEIGHTS_FILE, staging / WEIGHTS_FILE)
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    (staging / LICENSE_FILE).write_text(WEIGHTS_LICENSE)
    (staging / CARD_FILE).write_text(card(config, gate, stored_dtype(staging / WEIGHTS_FILE)))
    (staging / CHECKSUM_FILE).write_text(checksums(staging))
    previous = into.with_name(f".{into.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if into.exists():
        os.rename(into, previous)
    os.rename(staging, into)
    shutil.rmtree(previous, ignore_errors=True)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gate_out", help="--out folder of a passing `benchmarks/gate.py --fp16` run")
    parser.add_argument("--train-crop", type=int, required=True, help="training crop side of the run (px)")
    parser.add_argument("--trained", required=True, help="one line: date, recipe, steps x batch x crop")
    parser.add_argument("--into", default="src/demoe/weights/default", help="bundled folder to write")
    args = parser.parse_args(argv)
    gate_out = Path(args.gate_out)
    report_path, fp16_dir = gate_out / "gate.json", gate_out / "fp16"
    if not report_path.is_file() or not (fp16_dir / WEIGHTS_FILE).is_file():
        print(f"ship_weights: {gate_out} has no gate.json and fp16/ of a `gate.py --fp16` run", file=sys.stderr)
        return 2
    report = json.loads(report_path.read_text())
    if not report["passed"]:
        print(f"ship_weights: the gate FAILED for {report['candidate_dir']}; weights that fail are not shipped", file=sys.stderr)
        return 1
    into = package(fp16_dir, Path(args.into), args.train_crop, args.trained, gate_summary(report))
    print(f"shipped {report['candidate_dir']} into {into}:")
    print((into / CHECKSUM_FILE).read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
