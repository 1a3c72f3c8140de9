"""Peak memory of a restoration, measured, against the estimate `demoe.inference.memory` uses.

    python benchmarks/bench_memory.py [--out benchmarks/results/memory.json]

Each measurement runs in a fresh process: load the model, restore a small image once (so that
one-time allocations are done), read the resident set size, restore the test image, and read
the peak resident set size (`ru_maxrss`). The growth is what the restoration needed; it is
compared with `restoration_bytes(..., pixels_in_memory=True)`, the number the pipeline checks
against the available memory. One CPU thread, so the numbers do not depend on the machine's
core count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, resource, sys
import numpy as np, torch
import demoe
from demoe.inference import Deblurrer
from demoe.inference.memory import restoration_bytes
torch.set_num_threads(1)
preset, height, width, tile, top_k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model = demoe.create_model(preset)
deblurrer = Deblurrer(model, device="cpu")
image = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
deblurrer.restore(np.zeros((64, 64, 3), np.uint8), top_k=top_k, max_memory=0)
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))
before = rss()
result = deblurrer.restore(image, top_k=top_k, tile=tile, max_memory=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
estimate = restoration_bytes(model.config, height, width, 3, 1, tile, top_k, pixels_in_memory=True)
print(json.dumps({"preset": preset, "width_channels": model.config.width, "height": height, "width": width,
                  "tile": tile, "top_k": top_k, "measured_bytes": peak - before, "estimate_bytes": estimate,
                  "tiles": result.tiles}))
"""

CASES = [
    ("demoe-tiny", 1024, 1024, 0, 1),
    ("demoe-small", 1024, 1024, 0, 1),
    ("demoe-small", 1024, 1024, 0, 3),
    ("demoe-small", 1500, 1000, 0, 1),
    ("demoe", 1024, 1024, 0, 1),
    ("demoe", 1024, 1024, 0, 2),
    ("demoe-small", 3000, 3000, 512, 1),
    ("demoe", 2048, 2048, 512, 1),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "memory.json"))
    args = parser.parse_args()
    rows = []
    for case in CASES:
        result = subprocess.run([sys.executable, "-c", PROBE, *map(str, case)], capture_output=True, text=True,
                                env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["measured_bytes_per_pixel"] = round(row["measured_bytes"] / (row["height"] * row["width"]), 1)
        row["estimate_over_measured"] = round(row["estimate_bytes"] / row["measured_bytes"], 2)
        rows.append(row)
        print(f"{row['preset']:12s} {row['height']}x{row['width']} tile {row['tile']:4d} top-{row['top_k']}: "
              f"measured {row['measured_bytes'] / 2**20:7.0f} MiB ({row['measured_bytes_per_pixel']:.0f} B/px), "
              f"estimate {row['estimate_bytes'] / 2**20:7.0f} MiB (x{row['estimate_over_measured']})", flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
