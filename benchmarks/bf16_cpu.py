"""bf16 autocast against fp32 for inference on the CPU (docs/performance.md, "bf16 on the CPU").

Speed: the model (channels_last, eval, inference mode, task="auto") on one image of each size,
fp32 and bf16 autocast interleaved (A B A B ...) after one warm-up each; medians of the repeats
and the median of the per-round ratios (robust to load from other processes that drifts).
`demoe-small` carries the bundled weights, `demoe` random ones (speed does not depend on them).

Quality: the bundled weights through `Deblurrer(precision=...)` (what `demoe deblur --precision`
runs) over a held-out validation manifest, PSNR of each precision against the ground truth with
the benchmark's own convention (`demoe.evaluation`), and PSNR of bf16's output against fp32's.

    OMP_NUM_THREADS=1 python benchmarks/bf16_cpu.py speed
    OMP_NUM_THREADS=1 python benchmarks/bf16_cpu.py quality --manifest VAL1.jsonl VAL2.jsonl

The validation is what benchmarks/model_card/run.sh synthesises (Kodak24 + McMaster, 256 x 256
crops, seed 2026). Results are merged into benchmarks/results/bf16_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import demoe
from demoe.data.manifest import read_manifest
from demoe.evaluation.benchmark import Variant, run_benchmark
from demoe.inference import Deblurrer

RESULTS = Path(__file__).resolve().parent / "results" / "bf16_cpu.json"


def _cpu_name() -> str:
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    if not Path("/proc/cpuinfo").exists():
        return []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return sorted(flag for flag in line.split(":", 1)[1].split() if "bf16" in flag or flag.startswith("amx"))
    return []


def _machine() -> dict:
    return {
        "cpu": _cpu_name(),
        "bf16_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "torch": torch.__version__,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _merge(section: str, record: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[section] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def speed(args: argparse.Namespace) -> None:
    rows = []
    for preset in args.presets:
        model = demoe.load_model(None) if preset == "demoe-small" else demoe.create_model(preset)
        model = model.eval().to(memory_format=torch.channels_last)
        for height, width in [(256, 256), (768, 1024)]:
            generator = torch.Generator().manual_seed(0)
            x = torch.rand(1, 3, height, width, generator=generator).contiguous(memory_format=torch.channels_last)
            times = {"fp32": [], "bf16": []}

            def run(precision: str) -> tuple[float, torch.Tensor]:
                start = time.perf_counter()
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                    image = model(x, task="auto").image
                return time.perf_counter() - start, image.float()

            _, fp32_image = run("fp32")
            _, bf16_image = run("bf16")
            for _ in range(args.repeats if height * width <= 256 * 256 else max(3, args.repeats // 3)):
                for precision in ("fp32", "bf16"):
                    times[precision].append(run(precision)[0])
            fp32_s, bf16_s = statistics.median(times["fp32"]), statistics.median(times["bf16"])
            per_round = statistics.median(a / b for a, b in zip(times["fp32"], times["bf16"]))
            mse = float(((fp32_image.clamp(0, 1) - bf16_image.clamp(0, 1)) ** 2).mean())
            row = {
                "model": preset,
                "weights": "bundled" if preset == "demoe-small" else "random",
                "size": f"{width}x{height}",
                "fp32_s": round(fp32_s, 3),
                "bf16_s": round(bf16_s, 3),
                "speedup": round(fp32_s / bf16_s, 2),
                "speedup_per_round": round(per_round, 2),
                "fp32_runs": [round(t, 3) for t in times["fp32"]],
                "bf16_runs": [round(t, 3) for t in times["bf16"]],
                "bf16_vs_fp32_psnr_db": round(10 * math.log10(1 / mse), 2) if mse > 0 else None,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    _merge("speed", {"machine": _machine(), "repeats": args.repeats, "command": "OMP_NUM_THREADS=1 python benchmarks/bf16_cpu.py speed", "rows": rows})
    print("\n| model | input | fp32 channels_last | bf16 autocast | speed-up (medians / per round) | bf16 vs fp32 output |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} ({r['weights']} weights) | {r['size']} | {r['fp32_s']:.3f} s | {r['bf16_s']:.3f} s | "
              f"{r['speedup']:.2f}x / {r['speedup_per_round']:.2f}x | {r['bf16_vs_fp32_psnr_db']} dB |")


def quality(args: argparse.Namespace) -> None:
    records = [record for manifest in args.manifest for record in read_manifest(manifest)]
    if args.limit:
        records = records[: args.limit]
    results, images = {}, {}
    for precision in ("fp32", "bf16"):
        deblurrer = Deblurrer(args.weights, device="cpu", precision=precision)
        start = time.perf_counter()
        result = run_benchmark(deblurrer, records, [Variant("auto", 1)], group_by="task", no_reference=False, progress=False)
        seconds = time.perf_counter() - start
        results[precision] = {"rows": result.rows, "seconds": seconds}
        images[precision] = [deblurrer.restore(_read(record.blurry)).image for record in records[: args.compare]]
    by_task: dict[str, dict[str, list[float]]] = {}
    for precision, result in results.items():
        for row in result["rows"]:
            by_task.setdefault(row["group"], {"fp32": [], "bf16": []})[precision].append(row["psnr"])
    table = {task: {p: round(float(np.mean(v)), 3) for p, v in values.items()} for task, values in by_task.items()}
    mean = {p: round(float(np.mean([row["psnr"] for row in results[p]["rows"]])), 3) for p in ("fp32", "bf16")}
    same = [
        10 * math.log10(255.0**2 / max(float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)), 1e-12))
        for a, b in zip(images["fp32"], images["bf16"])
    ]
    record = {
        "machine": _machine(),
        "weights": args.weights or "bundled default",
        "manifests": args.manifest,
        "images": len(records),
        "psnr_by_task": table,
        "psnr_mean": mean,
        "difference_db": round(mean["bf16"] - mean["fp32"], 3),
        "seconds": {p: round(r["seconds"], 1) for p, r in results.items()},
        "bf16_vs_fp32_output_psnr_db": {"images": len(same), "min": round(min(same), 2), "median": round(statistics.median(same), 2)},
        "command": "OMP_NUM_THREADS=1 python benchmarks/bf16_cpu.py quality --manifest " + " ".join(args.manifest),
    }
    _merge("quality", record)
    print(json.dumps(record, indent=2))


def _read(path: str) -> np.ndarray:
    from demoe.imageio import as_rgb, read_array

    return as_rgb(read_array(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("speed")
    timing.add_argument("--presets", nargs="+", default=["demoe-small", "demoe"])
    timing.add_argument("--repeats", type=int, default=5)
    timing.set_defaults(handler=speed)
    scoring = commands.add_parser("quality")
    scoring.add_argument("--manifest", nargs="+", required=True)
    scoring.add_argument("--weights", default=None, help="model directory (default: the bundled weights)")
    scoring.add_argument("--limit", type=int, default=0, help="first N records only (0 = all)")
    scoring.add_argument("--compare", type=int, default=40, help="images whose bf16 and fp32 outputs are compared")
    scoring.set_defaults(handler=quality)
    args = parser.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
