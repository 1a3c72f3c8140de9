"""`demoe metrics RESTORED_DIR [SHARP_DIR]`: PSNR/SSIM (and more) of restored images, or only
no-reference metrics (NIQE, MUSIQ, NRQM) when there is no ground truth."""

from __future__ import annotations

import argparse
import json
import sys

from demoe.cli.common import CommandError
from demoe.evaluation.protocols import PROTOCOLS


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="PSNR/SSIM (and MAE, LPIPS, NIQE, MUSIQ, NRQM) of restored images",
        description="Score restored images against ground-truth images paired by file name "
        "(extension ignored, 8- and 16-bit); without SHARP_DIR, only the no-reference metrics "
        "asked for (--niqe, --musiq-weights, --nrqm-weights). Protocols: "
        + "; ".join(f"{name}: {protocol.description}" for name, protocol in PROTOCOLS.items()),
    )
    parser.add_argument("restored_dir", metavar="RESTORED_DIR", help="folder of restored images")
    parser.add_argument(
        "sharp_dir", metavar="SHARP_DIR", nargs="?", default=None, help="folder of ground-truth images (optional)"
    )
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
    parser.add_argument(
        "--musiq-weights",
        metavar="FILE",
        help="also compute MUSIQ with these weights (e.g. pyiqa's musiq_koniq_ckpt-e95806b9.pth; never downloaded)",
    )
    parser.add_argument(
        "--nrqm-weights", metavar="FILE", help="also compute NRQM with Ma et al.'s NRQM_model.mat (never downloaded)"
    )
    parser.set_defaults(handler=run_metrics)


def run_metrics(args: argparse.Namespace) -> int:
    from demoe.evaluation.folders import (
        PairingError,
        format_table,
        match_pairs,
        score_folder_no_reference,
        score_folders,
    )
    from demoe.evaluation.lpips import LPIPSBackboneNotFoundError, load_lpips
    from demoe.evaluation.no_reference import load_no_reference

    if args.lpips_backbone and not args.lpips:
        raise CommandError("--lpips-backbone needs --lpips alex|vgg")
    wants_no_reference = args.niqe or args.musiq_weights or args.nrqm_weights
    if args.sharp_dir is None:
        reference_only = [flag for flag, value in (("--lpips", args.lpips), ("--mask-dir", args.mask_dir)) if value]
        if reference_only or args.protocol != "default":
            used = reference_only + (["--protocol"] if args.protocol != "default" else [])
            raise CommandError(f"{', '.join(used)} need(s) SHARP_DIR")
        if not wants_no_reference:
            raise CommandError(
                "without SHARP_DIR, ask for a no-reference metric: --niqe, --musiq-weights FILE or --nrqm-weights FILE"
            )
    try:
        pairs = match_pairs(args.restored_dir, args.sharp_dir, args.mask_dir) if args.sharp_dir else None
    except PairingError as error:
        raise CommandError(str(error)) from None

    skipped = {}
    lpips_model = None
    if args.lpips:
        try:
            lpips_model = load_lpips(args.lpips, args.lpips_backbone)
        except (LPIPSBackboneNotFoundError, ValueError) as error:  # missing, unreadable or untrusted
            skipped["lpips"] = str(error)
    no_reference = None
    if wants_no_reference:
        no_reference, nr_skipped = load_no_reference(args.niqe, args.musiq_weights, args.nrqm_weights)
        skipped.update(nr_skipped)
    for metric, why in skipped.items():
        print(f"demoe metrics: {metric.upper()} skipped: {why}", file=sys.stderr)
    if pairs is None and not no_reference.names:
        raise CommandError("no metric left to compute")

    try:
        if pairs is None:
            scores = score_folder_no_reference(args.restored_dir, no_reference)
        else:
            scores = score_folders(pairs, PROTOCOLS[args.protocol], lpips_model=lpips_model, no_reference=no_reference)
    except (PairingError, ValueError, OSError) as error:
        raise CommandError(str(error)) from None
    scores.skipped.update(skipped)

    if args.json:
        print(json.dumps(scores.to_dict()))
    else:
        print(format_table(scores))
    return 0
