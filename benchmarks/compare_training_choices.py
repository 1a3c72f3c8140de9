"""Training choices side by side after the same wall time (issue 16, item 1; docs/training.md).

    python benchmarks/compare_training_choices.py [--minutes 5] [--config configs/default_weights/continue.yaml] \
        [--out benchmarks/results/training-choices.json] [--runs runs/choices]

Each choice continues the same warm start (the config's `model.init_from`, the shipped weights
by default) with the same data, loss and seed; only the choice differs: routing in stage 2
(the paper's dense softmax mixture or label routing, each image through its own class's
expert), precision (fp32 or bf16 autocast with fp32 master weights), memory format, threads,
and whether blur synthesis runs in a DataLoader worker or in the training process.

"The same wall time" is made by the schedule: each choice's optimizer steps/s is measured first
(benchmarks/bench_training.py's step on random data, plus the synthesis time of a batch when
synthesis runs in the training process), its run gets `minutes x steps/s` steps with
its cosine schedule ending there, and the wall time it really took is reported beside it. The
EMA is off (raw weights) so that short runs show what they learnt. Every run ends with the
config's validation (Kodak24 + McMaster crops, fixed seed): PSNR per blur type and its gain
over the blurry input, router accuracy. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import cpu_model, step_rate, synthesis_rate  # noqa: E402

from demoe.config import TASK_NAMES  # noqa: E402
from demoe.train import load_config, train  # noqa: E402
from demoe.train.loop import cpu_has_native_bf16  # noqa: E402


@dataclass(frozen=True)
class Choice:
    name: str
    routing: str  # "dense" (the paper's mixture) or "label"
    precision: str  # "fp32" or "bf16"
    channels_last: bool
    threads: int
    num_workers: int = 1  # 0 = blur synthesis in the training process, on the critical path


CHOICES = (
    Choice("dense mixture, fp32 NCHW, 1 thread (the run behind the first shipped weights)", "dense", "fp32", False, 1),
    Choice("dense mixture, bf16 channels_last, 2 threads", "dense", "bf16", True, 2),
    Choice("label routing, fp32 channels_last, 2 threads", "label", "fp32", True, 2),
    Choice("label routing, bf16 channels_last, 2 threads, synthesis in the training process", "label", "bf16", True, 2, 0),
    Choice("label routing, bf16 channels_last, 2 threads (the CPU default)", "label", "bf16", True, 2),
)


def overrides(choice: Choice, steps: int) -> list[str]:
    return [
        f"train.routing={choice.routing}",
        f"runtime.precision={choice.precision}",
        f"runtime.channels_last={str(choice.channels_last).lower()}",
        f"runtime.cpu_threads={choice.threads}",
        f"train.num_workers={choice.num_workers}",
        f"train.total_steps={steps}",
        "train.ema_decay=0",
        "log.validate_every=0",
        f"log.save_every={steps}",
        "log.keep_checkpoints=1",
        "log.progress=false",
        "log.tensorboard=false",
    ]


def run_choice(choice: Choice, config_path: str, minutes: float, runs: Path, index: int) -> dict:
    """Measure the choice's step rate, train it for `minutes` worth of steps, validate."""
    base = load_config(config_path)
    torch.set_num_threads(choice.threads)
    rate = step_rate(base.model.preset, choice.routing, choice.precision, choice.channels_last,
                     base.train.batch_size, base.data.train.crop_size, steps=6)
    if choice.num_workers == 0:  # synthesis on the critical path: its time adds to every step
        pairs_per_s = synthesis_rate(base.data.train.crop_size, 40, base.data.train.dark_scenes)
        rate = 1.0 / (1.0 / rate + base.train.batch_size / pairs_per_s)
    steps = max(1, round(rate * minutes * 60))
    config = load_config(config_path, overrides(choice, steps))
    start = time.perf_counter()
    result = train(config, runs / f"choice-{index}")
    wall = time.perf_counter() - start
    validation = result.validation
    per_task = {
        task: {"psnr": round(validation.psnr_by_task[task], 3),
               "gain": round(validation.psnr_by_task[task] - validation.input_psnr_by_task[task], 3)}
        for task in TASK_NAMES if task in validation.psnr_by_task
    }
    return {
        **asdict(choice),
        "measured_steps_per_s": round(rate, 3),
        "steps": steps,
        "images": steps * config.train.batch_size,
        "wall_s": round(wall, 1),  # the whole call: set-up, the steps, one validation
        "images_per_s_in_run": round(steps * config.train.batch_size / wall, 2),
        "validation_psnr_by_task": per_task,
        "validation_mean_gain": round(sum(v["gain"] for v in per_task.values()) / len(per_task), 3),
        "router_accuracy": validation.router_accuracy,
    }


def markdown(rows: list[dict]) -> str:
    header = "| choice | steps/s | images | wall | " + " | ".join(TASK_NAMES) + " | mean gain | router |"
    lines = [header, "|" + "---|" * (6 + len(TASK_NAMES))]
    for row in rows:
        gains = [f"{row['validation_psnr_by_task'][t]['gain']:+.2f}" for t in TASK_NAMES]
        router = "–" if row["router_accuracy"] is None else f"{row['router_accuracy']:.1%}"
        lines.append(f"| {row['name']} | {row['measured_steps_per_s']:.2f} | {row['images']} | "
                     f"{row['wall_s'] / 60:.1f} min | " + " | ".join(gains) +
                     f" | {row['validation_mean_gain']:+.2f} | {router} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/default_weights/continue.yaml")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-time budget of each choice")
    parser.add_argument("--choices", type=int, nargs="+", help="indices into CHOICES (default: all)")
    parser.add_argument("--out", default="benchmarks/results/training-choices.json")
    parser.add_argument("--runs", default="runs/choices", help="folder for the runs' checkpoints")
    args = parser.parse_args(argv)
    indices = args.choices if args.choices is not None else list(range(len(CHOICES)))
    rows = []
    for index in indices:
        row = run_choice(CHOICES[index], args.config, args.minutes, Path(args.runs), index)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "machine": cpu_model(), "torch": torch.__version__, "native_bf16": cpu_has_native_bf16(),
        "config": args.config, "minutes": args.minutes, "runs": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
