"""`demoe metrics RESTORED_DIR SHARP_DIR`: PSNR/SSIM (and more) of restored images."""

from __future__ import annotations

import argparse
import json
import sys

from demoe.evaluation.protocols import PROTOCOLS


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="PSNR/SSIM (and MAE, LPIPS, NIQE) of restored images against ground truth",
        description="Score restored images against ground-truth images paired by file name "
        "(extension ignored, 8- and 16-bit). Protocols: "
        + "; ".join(f"{name}: {protocol.description}" for name, protocol in PROTOCOLS.items()),
    )
    parser.add_argument("restored_dir", metavar="RESTORED_DIR", help="folder of restored images")
    parser.add_argument("sharp_dir", metavar="SHARP_DIR", help="folder of ground-truth images")
    parser.add_argument("--json", action="store_true", help='print {"per_image": [...], "mean": {...}}')
    parser.add_argument(
        "--protocol", default="default", choices=sorted(PROTOCOLS), help="benchmark convention (default: default)"
    )
    parser.add_argument("--mask-dir", help="blur masks paired by name (reloblur protocol: masked PSNR/SSIM)")
    parser.add_argument("--lpips", choices=("alex", "vgg"), help="also compute LPIPS v0.1 with this backbone")
    parser.add_argument(
        "--lpips-backbone",
        metavar="FILE",
        help="torchvision ImageNet weights for --lpips (default: the torch hub cache; never downloaded)",
    )
    parser.add_argument("--niqe", action="store_true", help="also compute NIQE of the restored images")
    parser.set_defaults(handler=run_metrics)


def run_metrics(args: argparse.Namespace) -> int:
    from demoe.evaluation.folders import PairingError, format_table, match_pairs, score_folders
    from demoe.evaluation.lpips import LPIPSBackboneNotFoundError, load_lpips

    if args.lpips_backbone and not args.lpips:
        print("demoe metrics: --lpips-backbone needs --lpips alex|vgg", file=sys.stderr)
        return 2
    try:
        pairs = match_pairs(args.restored_dir, args.sharp_dir, args.mask_dir)
    except PairingError as error:
        print(f"demoe metrics: {error}", file=sys.stderr)
        return 2

    lpips_model, skipped = None, {}
    if args.lpips:
        try:
            lpips_model = load_lpips(args.lpips, args.lpips_backbone)
        except LPIPSBackboneNotFoundError as error:
            skipped["lpips"] = str(error)
            print(f"demoe metrics: LPIPS skipped: {error}", file=sys.stderr)

    try:
        scores = score_folders(pairs, PROTOCOLS[args.protocol], lpips_model=lpips_model, with_niqe=args.niqe)
    except (PairingError, ValueError, OSError) as error:
        print(f"demoe metrics: {error}", file=sys.stderr)
        return 2
    scores.skipped.update(skipped)

    if args.json:
        print(json.dumps(scores.to_dict()))
    else:
        print(format_table(scores))
    return 0
