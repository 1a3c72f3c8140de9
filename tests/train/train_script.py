"""Run a tiny training on FakePairs from the command line (for tests that need a separate
process: SIGKILL and resume, torchrun).

    python train_script.py RUN_DIR CONFIG_JSON [--length N] [--delay S] [--resume]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from demoe.train import parse_config, train  # noqa: E402
from train_fakes import FakePairs  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("run_dir")
parser.add_argument("config_json")
parser.add_argument("--length", type=int, default=12)
parser.add_argument("--delay", type=float, default=0.0)
parser.add_argument("--resume", action="store_true")
args = parser.parse_args()
config = parse_config(json.loads(args.config_json))
train(config, args.run_dir, resume=args.resume, train_dataset=FakePairs(args.length, delay=args.delay))
