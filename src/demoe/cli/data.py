"""`demoe data ...`: dataset preparation commands (`aio-blur`, `aio-blur-ood`, `manifest`).

`demoe data` has its own sub-commands; each is added by one function of `DATA_COMMANDS`
taking the `demoe data` sub-parsers, so a new one is a function plus one entry in the tuple.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from demoe.cli.common import CommandError, add_output_argument
from demoe.cli.synth import add_synth_parser
from demoe.data.manifest import SPLITS
from demoe.data.sources import DATASET_FOLDERS


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data",
        help="prepare datasets: AIO-Blur manifests from the benchmark releases",
        description="Dataset preparation. Layouts, downloads and the manifest format: docs/datasets.md.",
    )
    data_subparsers = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    for add_data_parser in DATA_COMMANDS:
        add_data_parser(data_subparsers)


def _dataset_path(value: str) -> tuple[str, str]:
    name, separator, path = value.partition("=")
    if not separator or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {value!r}")
    if name not in DATASET_FOLDERS:
        raise argparse.ArgumentTypeError(f"unknown dataset {name!r}; known: {', '.join(DATASET_FOLDERS)}")
    return name, path


def _add_location_arguments(parser: argparse.ArgumentParser) -> None:
    folders = ", ".join(f"{names[0]}/ ({dataset})" for dataset, names in DATASET_FOLDERS.items())
    parser.add_argument("--root", required=True, help=f"folder holding the datasets as {folders}")
    parser.add_argument(
        "--path",
        dest="paths",
        metavar="NAME=DIR",
        type=_dataset_path,
        action="append",
        default=[],
        help="folder of one dataset elsewhere than under --root, e.g. --path GoPro=/data/GOPRO_Large (repeatable)",
    )


def _add_aio_blur(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "aio-blur",
        help="write the AIO-Blur manifest (balanced train + original test splits)",
        description="Read RealBlur-J, ReLoBlur, LOLBlur, GoPro and DPDD in their official layouts and "
        "write one manifest: the training set balanced as in the paper's Table 4 (RealBlur-J kept, "
        "ReLoBlur/GoPro/DPDD repeated x2/x2/x11, LOLBlur reduced to 3 x 1400 by MSE-histogram "
        "subsampling), then the original test splits. Prints counts per dataset and split.",
    )
    _add_location_arguments(parser)
    add_output_argument(parser, "manifest to write (JSON Lines)", metavar="MANIFEST", required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the LOLBlur draw (default 0)")
    parser.add_argument(
        "--gopro-blur",
        choices=("blur", "blur_gamma"),
        default="blur",
        help="GoPro input folder (default blur, as the NAFNet/MPRNet GoPro packaging)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes for the LOLBlur MSE (default 1)")
    parser.add_argument(
        "--mse-downscale",
        type=int,
        choices=(1, 2, 4, 8),
        default=4,
        help="read LOLBlur images at 1/N size for the MSE (default 4; 1 = full size)",
    )
    parser.add_argument(
        "--mse-cache",
        metavar="CSV",
        help="reuse/write the LOLBlur MSE values here (blurry,sharp,downscale,mse), to rerun with another seed quickly",
    )
    parser.set_defaults(handler=run_aio_blur)


def _add_aio_blur_ood(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "aio-blur-ood",
        help="write the AIO-Blur-OOD test manifest (RealDOF, RSBlur, Real-LOLBlur)",
        description="Read RealDOF, RSBlur (official real test list) and Real-LOLBlur (blurry only, "
        "without its RealBlur-J subset; found by file content when RealBlur/ is under --root) and write "
        "one test manifest.",
    )
    _add_location_arguments(parser)
    add_output_argument(parser, "manifest to write (JSON Lines)", metavar="MANIFEST", required=True)
    parser.set_defaults(handler=run_aio_blur_ood)


def _add_manifest(data_subparsers: argparse._SubParsersAction) -> None:
    parser = data_subparsers.add_parser(
        "manifest",
        help="write the manifest of one benchmark (its splits as released)",
        description="Read one benchmark in its official layout and write its manifest, every split "
        "it was released with (or those given with --split); prints the counts per split. Real-LOLBlur "
        "leaves out its RealBlur-J images (found by content when RealBlur/ is under --root).",
    )
    parser.add_argument("dataset", metavar="NAME", choices=list(DATASET_FOLDERS), help=f"one of {', '.join(DATASET_FOLDERS)}")
    _add_location_arguments(parser)
    add_output_argument(parser, "manifest to write (JSON Lines)", metavar="MANIFEST", required=True)
    parser.add_argument("--split", dest="splits", action="append", choices=SPLITS, help="only this split (repeatable)")
    parser.add_argument(
        "--gopro-blur", choices=("blur", "blur_gamma"), default="blur", help="GoPro input folder (default blur)"
    )
    parser.set_defaults(handler=run_manifest)


DATA_COMMANDS = (_add_aio_blur, _add_aio_blur_ood, _add_manifest, add_synth_parser)


def run_manifest(args: argparse.Namespace) -> int:
    from demoe.data.manifest import write_manifest
    from demoe.data.sources import DatasetLayoutError, locate_dataset, read_release

    overrides = dict(args.paths)
    try:
        folder = locate_dataset(args.root, args.dataset, overrides)
        realblur = None
        if args.dataset == "Real-LOLBlur":
            try:
                realblur = locate_dataset(args.root, "RealBlur-J", overrides)
            except DatasetLayoutError:
                realblur = None  # only a sub-folder named like RealBlur identifies the subset then
        records = read_release(
            args.dataset, folder, None if args.splits is None else tuple(dict.fromkeys(args.splits)),
            gopro_blur_folder=args.gopro_blur, realblur_folder=realblur,
        )
    except (DatasetLayoutError, ValueError) as error:
        raise CommandError(str(error)) from None
    write_manifest(args.output, records)
    for split in SPLITS:
        count = sum(record.split == split for record in records)
        if count:
            print(f"{args.dataset}  {split:<5}  {count}")
    print(f"wrote {len(records)} records of {args.dataset} ({folder}) to {Path(args.output)}")
    return 0


def run_aio_blur(args: argparse.Namespace) -> int:
    from demoe.data.aioblur import BalanceConfig, build_aio_blur
    from demoe.data.manifest import write_manifest
    from demoe.data.sources import DatasetLayoutError

    if args.workers < 1:
        raise CommandError("--workers must be >= 1")
    try:
        mix = build_aio_blur(
            args.root,
            seed=args.seed,
            overrides=dict(args.paths),
            config=BalanceConfig(mse_downscale=args.mse_downscale),
            gopro_blur_folder=args.gopro_blur,
            workers=args.workers,
            mse_cache=args.mse_cache,
        )
    except (DatasetLayoutError, ValueError) as error:
        raise CommandError(str(error)) from None
    write_manifest(args.output, mix.records)
    print(mix.format_summary())
    print(f"wrote {len(mix.records)} records to {Path(args.output)}")
    return 0


def run_aio_blur_ood(args: argparse.Namespace) -> int:
    from demoe.data.aioblur import build_aio_blur_ood
    from demoe.data.manifest import write_manifest
    from demoe.data.sources import DatasetLayoutError

    try:
        mix = build_aio_blur_ood(args.root, overrides=dict(args.paths))
    except (DatasetLayoutError, ValueError) as error:
        raise CommandError(str(error)) from None
    write_manifest(args.output, mix.records)
    print(mix.format_summary())
    print(f"wrote {len(mix.records)} records to {Path(args.output)}")
    return 0
