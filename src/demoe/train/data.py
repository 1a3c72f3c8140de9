"""Datasets and loaders built from the data section of a training config.

Data order is deterministic: the sampler permutes the dataset with a generator seeded by
(seed, epoch) (`DistributedSampler`), every dataset item is deterministic in (seed, epoch,
index) through `dataset.set_epoch(epoch)`, and a resumed run starts the epoch at the sample
where the checkpoint left it.
"""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import Iterator, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from demoe.data.synthetic import sharp_image_paths
from demoe.imageio import IMAGE_SUFFIXES
from demoe.train.config import DataConfig



class EpochDataset(Protocol):
    """What training needs from a dataset: items are dicts with
    blurry (3, S, S) float in [0, 1], sharp (3, S, S), label int64 scalar, dataset str."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...

    def set_epoch(self, epoch: int) -> None: ...


def build_dataset(config: DataConfig, seed: int, device: torch.device | str = "cpu") -> EpochDataset:
    """The dataset a `DataConfig` describes (demoe.data is imported here, on demand). Kind
    "synthetic_device" gives a `SyntheticBlurBatches` on `device` (whole batches per step)."""
    if config.kind == "manifest":
        from demoe.data.datasets import PairedCropDataset
        from demoe.data.manifest import read_manifest

        records = read_manifest(config.manifest)
        kept = [
            record
            for record in records
            if record.split == config.split
            and record.task in config.tasks
            and (not config.datasets or record.dataset in config.datasets)
            and record.sharp is not None
        ]
        if not kept:
            raise ValueError(
                f"{config.manifest}: no pairs with a sharp image for split {config.split!r}, "
                f"tasks {list(config.tasks)}, datasets {list(config.datasets) or 'all'} "
                f"({len(records)} records in the manifest)"
            )
        return PairedCropDataset(kept, crop_size=config.crop_size, seed=seed)
    from demoe.data.synthetic import DarkSceneConfig, SynthConfig, SyntheticBlurBatches, SyntheticBlurDataset

    folders = (config.photos,) if isinstance(config.photos, str) else tuple(config.photos or ())
    photos = [str(path) for folder in folders for path in list_photos(folder)]
    synthesis = dict(
        crop_size=config.crop_size,
        tasks=config.tasks,
        seed=seed,
        length=config.length,
        config=SynthConfig(dark_scene=DarkSceneConfig(probability=config.dark_scenes)),
    )
    if config.kind == "synthetic_device":
        return SyntheticBlurBatches(photos, **synthesis, device=device)
    return SyntheticBlurDataset(photos, **synthesis)


def list_photos(folder: str | Path) -> list[Path]:
    photos = sharp_image_paths(folder, recursive=True)
    if not photos:
        raise FileNotFoundError(f"no photographs ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return photos


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` that can start an epoch part-way through.

    With `drop_last=True` every rank gets len(dataset) // world_size indices, rank r taking
    positions r, r + W, r + 2W, ... of the (seed, epoch) permutation; so step s of the global
    batch B covers permutation positions [s * B, (s + 1) * B) whatever the number of ranks.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        self.skip = 0

    def set_position(self, epoch: int, skip: int) -> None:
        """Start `epoch` after this rank's first `skip` indices."""
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


def make_loader(
    dataset: Dataset, sampler: ResumableSampler, local_batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    # A private generator: creating an iterator must not draw from the global torch RNG, or a
    # resumed run (which creates its iterator mid-epoch) would diverge from an uninterrupted one.
    return DataLoader(
        dataset,
        batch_size=local_batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
        worker_init_fn=ignore_stop_signals,  # called in worker processes only
    )


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: Ctrl-C (SIGINT) and a scheduler's or `kill -- -PGID`'s SIGTERM
    reach the whole process group; workers leave them to the main process, which finishes its
    step, saves a checkpoint and shuts them down (demoe.train.loop.StopRequest). A worker killed
    by the signal would instead fail the main process ("DataLoader worker ... killed by signal")
    and lose the steps since the last checkpoint. Workers still exit when the main process dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
