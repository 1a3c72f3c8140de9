"""Turn the outputs of benchmarks/model_card/run.sh into the tables of docs/model-card.md.

    python benchmarks/model_card/summarize.py runs/model-card
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

from demoe.config import TASK_NAMES

CAMERA_MOTION = {"global_motion", "synth_global_motion"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def four_class(task: str) -> str:
    return "camera_motion" if task in CAMERA_MOTION else task


def synthetic_tables(out: Path) -> str:
    demoe_rows = rows(out / "synth-demoe" / "per_image.jsonl")
    others = {
        name: [r for r in rows(out / folder / "per_image.jsonl") if r["method"] != "Blurry input"]
        for name, folder in (("NAFNet (same budget)", "synth-baseline"), ("NAFNet (stage 1)", "synth-stage1"))
        if (out / folder / "per_image.jsonl").is_file()
    }
    methods: dict[str, list[dict]] = defaultdict(list)
    for row in demoe_rows:
        methods[row["method"]].append(row)
    for name, rs in others.items():
        methods[name] = rs
    lines = ["| method | " + " | ".join(TASK_NAMES) + " | mean |", "|---|" + "---:|" * (len(TASK_NAMES) + 1)]
    for method, rs in methods.items():
        cells = []
        for task in TASK_NAMES:
            of_task = [r for r in rs if r["task"] == task]
            cells.append(f"{mean(r['psnr'] for r in of_task):.2f} / {mean(r['ssim'] for r in of_task):.3f}")
        cells.append(f"{mean(r['psnr'] for r in rs):.2f} / {mean(r['ssim'] for r in rs):.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    count = Counter(r["task"] for r in demoe_rows if r["method"] == "Blurry input")
    lines.append("")
    lines.append("Images per class: " + ", ".join(f"{t} {count[t]}" for t in TASK_NAMES) + ".")
    inputs = {(r["blurry"]): r for r in demoe_rows if r["method"] == "Blurry input"}
    auto = [r for r in demoe_rows if r["method"] == "DeMoE k=1"]
    gain = mean(r["psnr"] - inputs[r["blurry"]]["psnr"] for r in auto)
    lines.append(f"Mean PSNR gain of DeMoE k=1 over the blurry input: {gain:+.2f} dB.")
    for name, rs in others.items():
        lines.append(f"Mean PSNR of {name}: {mean(r['psnr'] for r in rs):.2f} dB "
                     f"(DeMoE k=1: {mean(r['psnr'] for r in auto):.2f} dB).")
    return "\n".join(lines)


def router_tables(per_image: list[dict], method: str) -> str:
    verdicts = [r for r in per_image if r["method"] == method and "router_top" in r]
    five = mean(float(r["router_top"] == r["task"]) for r in verdicts)
    four = mean(float(four_class(r["router_top"]) == four_class(r["task"])) for r in verdicts)
    lines = [f"Router accuracy over {len(verdicts)} images: {100 * five:.1f} % (5 classes), "
             f"{100 * four:.1f} % (4 classes: camera motion = global_motion or synth_global_motion).", ""]
    lines.append("| true \\ predicted | " + " | ".join(TASK_NAMES) + " |")
    lines.append("|---|" + "---:|" * len(TASK_NAMES))
    for task in TASK_NAMES:
        counts = Counter(r["router_top"] for r in verdicts if r["task"] == task)
        lines.append(f"| {task} | " + " | ".join(str(counts[p]) for p in TASK_NAMES) + " |")
    return "\n".join(lines)


def real_tables(out: Path) -> str:
    real = rows(out / "real-demoe" / "per_image.jsonl")
    lines = ["| dataset (blur type) | images | metric | blurry input | DeMoE k=1 | DeMoE† k=1 | router verdicts (k=1) |",
             "|---|---:|---|---:|---:|---:|---|"]
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for row in real:
        kind = "pairs" if "psnr" in row else "blurry only"
        by_dataset[f"{row['source_dataset']}, {kind}"].append(row)
    for dataset, rs in by_dataset.items():
        task = rs[0]["task"]
        paired = "psnr" in rs[0]
        metric = "psnr" if paired else "niqe"
        values = {m: mean(r.get(metric) for r in rs if r["method"] == m) for m in ("Blurry input", "DeMoE k=1", "DeMoE† k=1")}
        images = sum(r["method"] == "Blurry input" for r in rs)
        verdicts = Counter(r["router_top"] for r in rs if r["method"] == "DeMoE k=1")
        verdict_text = ", ".join(f"{t} {n}" for t, n in verdicts.most_common())
        label = "PSNR (dB) ↑" if paired else "NIQE ↓"
        lines.append(f"| {dataset} ({task}) | {images} | {label} | {values['Blurry input']:.2f} | "
                     f"{values['DeMoE k=1']:.2f} | {values['DeMoE† k=1']:.2f} | {verdict_text} |")
    return "\n".join(lines) + "\n\n" + router_tables(real, "DeMoE k=1")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    print("## Held-out synthetic validation (PSNR / SSIM)\n")
    print(synthetic_tables(out))
    print("\n## Router on held-out synthetic validation\n")
    print(router_tables(rows(out / "synth-demoe" / "per_image.jsonl"), "DeMoE k=1"))
    if (out / "real-demoe" / "per_image.jsonl").is_file():
        print("\n## Real blurry images\n")
        print(real_tables(out))
