"""Many processes over one list of inputs: `torchrun --nproc-per-node N -m demoe deblur ...`.

How a sharded run keeps the one-process contract:

- **One list.** Rank 0 lists the inputs and broadcasts the list (`agree`), so ranks on other
  nodes, or a folder changing during start-up, cannot see different inputs.
- **Each input exactly once.** Inputs are dealt out in groups (`deal`): inputs whose outputs
  would share a name (`a.png` and `a.jpg` in one folder) form one group, so the run refuses the
  second one as a single process does; group i goes to rank i mod N. Every rank protects every
  input of the run, not only its own, from being overwritten.
- **Devices.** With GPUs, rank r uses GPU LOCAL_RANK (modulo the GPUs of its node); on CPUs the
  node's cores are divided between its processes (`torch.set_num_threads`). Outputs do not
  depend on the rank that made them.
- **One report.** Each rank writes its lines to `REPORT.rank<R>` as it goes (what a killed run
  leaves to look at); at the end the lines are gathered on rank 0 (through the process group, so
  the report folder need not be shared between nodes), written to REPORT in input order, each
  with its `"rank"`, and the per-rank files are removed.
- **Resuming.** Outputs are written atomically by every rank, so `--skip-existing` resumes a
  killed run whatever the number of processes of the new run.

The process group is gloo (coordination only: no tensors are exchanged), with a timeout of
seven days because ranks finish their shares at different times and wait for each other at the
end. Without torchrun's variables nothing here touches torch.distributed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import distributed as dist

from demoe.distributed import DistributedContext, broadcast_object, gather_objects, rank_environment
from demoe.fileio import atomic_write
from demoe.inference.batch import BatchOptions, BatchSummary, InputFile, Inputs, ReportWriter, run_batch
from demoe.inference.pipeline import Deblurrer, resolve_device
from demoe.inference.video import VideoOptions, is_video_file, run_videos

T = TypeVar("T")
# Ranks wait at the end for the slowest one; torchrun ends them all if one of them dies.
GROUP_TIMEOUT = timedelta(days=7)


def start_ranks(device: str = "auto") -> DistributedContext:
    """This process's place in a torchrun job and its device (a one-process context otherwise).

    device "auto" or "cuda" under torchrun with GPUs: GPU LOCAL_RANK mod (GPUs of the node);
    "cpu" (or no GPU): the CPU, with the node's cores divided between its processes.
    ValueError for a device that is not there.
    """
    env = rank_environment()
    if env.world_size == 1:
        return DistributedContext(0, 0, 1, resolve_device(device))
    if device in ("auto", "cuda") and torch.cuda.is_available():
        index = env.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        torch_device = torch.device("cuda", index)
    else:
        torch_device = resolve_device("cpu" if device == "auto" else device)
        if torch_device.type == "cpu":
            torch.set_num_threads(max(1, available_cpus() // env.local_world_size))
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=GROUP_TIMEOUT)
    return DistributedContext(env.rank, env.local_rank, env.world_size, torch_device)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def agree(make: Callable[[], T], context: DistributedContext) -> T:
    """`make()` evaluated on rank 0 and sent to every rank (just `make()` in one process)."""
    return broadcast_object(make() if context.is_main else None, context)


def output_group(item: InputFile) -> Hashable:
    """Inputs of one group could write the same output name (folder + stem, any case)."""
    return (str(item.relative.parent).lower(), item.relative.stem.lower())


def deal(items: Sequence[T], context: DistributedContext, key: Callable[[T], Hashable] | None = None) -> list[T]:
    """This rank's share of `items`, in their order: groups of equal `key` (in order of first
    appearance) go to rank (group number mod world size); without key every item is a group.

    >>> from demoe.distributed import DistributedContext
    >>> ranks = [DistributedContext(r, r, 2, torch.device("cpu")) for r in range(2)]
    >>> [deal(["a", "b", "A", "c"], rank, key=str.lower) for rank in ranks]
    [['a', 'A', 'c'], ['b']]
    """
    if not context.is_distributed:
        return list(items)
    groups: dict[Hashable, int] = {}
    share = []
    for position, item in enumerate(items):
        group = groups.setdefault(key(item) if key is not None else position, len(groups))
        if group % context.world_size == context.rank:
            share.append(item)
    return share


class RankReport(ReportWriter):
    """The report of one rank of a sharded run: lines carry "rank", go to REPORT.rank<R> as
    they come, and are merged into REPORT on rank 0 by `merge`."""

    def __init__(self, path: Path | None, context: DistributedContext) -> None:
        self.final = path
        self.context = context
        self.records: list[dict] = []
        super().__init__(part_path(path, context.rank) if path is not None else None)

    def write(self, record: dict) -> None:
        record = {**record, "rank": self.context.rank}
        self.records.append(record)
        super().write(record)

    def merge(self, order: Sequence[str]) -> None:
        """Gather every rank's lines; rank 0 writes them to the report in `order` of "input".

        Every rank must call it (it is a collective); the per-rank files are then removed.
        """
        self.close()
        gathered = gather_objects(self.records, self.context)
        if self.final is None:
            return
        if self.context.is_main:
            position = {name: index for index, name in enumerate(order)}
            lines = sorted(
                (record for records in gathered for record in records),
                key=lambda record: (position.get(record.get("input"), len(position)), record["rank"]),
            )
            text = "".join(json.dumps(record) + "\n" for record in lines)
            atomic_write(self.final, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
            for stale in self.final.parent.glob(f"{self.final.name}.rank*"):
                if stale.name[len(self.final.name) + len(".rank") :].isdigit():
                    stale.unlink(missing_ok=True)  # parts of this run and of killed earlier runs
        part_path(self.final, self.context.rank).unlink(missing_ok=True)  # on a node of its own


def part_path(report: Path, rank: int) -> Path:
    return report.with_name(f"{report.name}.rank{rank}")


def open_report(path: Path | None, context: DistributedContext) -> ReportWriter:
    """A plain `ReportWriter` in one process, a `RankReport` under torchrun."""
    return RankReport(path, context) if context.is_distributed else ReportWriter(path)


def merge_summaries(summaries: Sequence[BatchSummary], context: DistributedContext) -> BatchSummary:
    """The counts and failures of this rank's summaries added up over all ranks.

    seconds is the longest rank's wall time.
    """
    local = BatchSummary()
    for summary in summaries:
        local.done += summary.done
        local.skipped += summary.skipped
        local.low_confidence += summary.low_confidence
        local.failed += summary.failed
        local.seconds += summary.seconds
    if not context.is_distributed:
        return local
    total = BatchSummary()
    for part in gather_objects(local, context):
        total.done += part.done
        total.skipped += part.skipped
        total.low_confidence += part.low_confidence
        total.failed += part.failed
        total.seconds = max(total.seconds, part.seconds)
    return total


def gather_in_order(entries: Sequence[tuple[int, Any]], context: DistributedContext) -> list[Any]:
    """(position, value) pairs of every rank, values sorted by position (this rank's alone in
    one process). A collective: every rank must call it."""
    gathered = gather_objects(list(entries), context)
    return [value for _, value in sorted((entry for part in gathered for entry in part), key=lambda e: e[0])]


def restore_inputs(
    inputs: Inputs,
    out_dir: Path,
    deblurrer: Deblurrer,
    options: BatchOptions,
    video: VideoOptions,
    report: ReportWriter,
    context: DistributedContext,
    quiet: bool = False,
    say: Callable[[str], None] = print,
) -> BatchSummary:
    """Restore the images and videos of `inputs` into out_dir, shared out between the ranks
    (`demoe deblur`); the summary of all ranks, on every rank. A collective under torchrun.

    The file's content decides what is a video (rank 0 looks, so that every rank agrees): a
    clip.mp4 holding a PNG is an image. No rank overwrites any input of the run. `report` is
    `open_report`'s; under torchrun it is merged here in the order of a one-process report
    (input errors, images, videos).
    """
    is_video = agree(lambda: [is_video_file(item.path) for item in inputs.files], context)
    images = [item for item, video_file in zip(inputs.files, is_video) if not video_file]
    videos = [item for item, video_file in zip(inputs.files, is_video) if video_file]
    protected = {item.path.resolve() for item in inputs.files}
    mine = Inputs(deal(images, context, output_group), inputs.errors if context.is_main else [])
    summaries = [
        run_batch(mine, out_dir, deblurrer, options, report, quiet=quiet, say=say, protected=protected),
        run_videos(deal(videos, context, output_group), out_dir, deblurrer, options, video, report, protected, quiet, say),
    ]
    if context.is_distributed:
        report.merge([spec for spec, _ in inputs.errors] + [str(item.path) for item in (*images, *videos)])
    return merge_summaries(summaries, context)
