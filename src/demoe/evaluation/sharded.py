"""`demoe eval` under torchrun: the records shared out between processes, one merged result.

Record i goes to rank i mod N; each rank runs `run_benchmark` on its share; the rows are
gathered on rank 0 in record order (each with its "rank") and the router study is computed over
all records, so the table, the router study and every score equal a one-process run's.
"""

from __future__ import annotations

from collections.abc import Sequence

from demoe.data.manifest import PairRecord
from demoe.distributed import DistributedContext
from demoe.evaluation.benchmark import BenchmarkResult, Variant, _router_report, run_benchmark
from demoe.inference import Deblurrer
from demoe.inference.sharding import deal, gather_in_order


def run_benchmark_sharded(
    context: DistributedContext,
    deblurrer: Deblurrer,
    records: Sequence[PairRecord],
    variants: Sequence[Variant],
    **options,
) -> BenchmarkResult | None:
    """`run_benchmark(deblurrer, records, variants, **options)` over all ranks.

    Returns the merged result on rank 0 and None on the other ranks (just `run_benchmark` in
    one process). A collective: every rank must call it with the same records. Only rank 0
    shows progress.
    """
    if not context.is_distributed:
        return run_benchmark(deblurrer, records, variants, **options)
    options["progress"] = options.get("progress", True) and context.is_main
    share = deal(list(enumerate(records)), context)
    part = run_benchmark(deblurrer, [record for _, record in share], variants, **options)
    per_record = len(variants)  # run_benchmark writes one row per variant, record by record
    entries = [
        (position, [{**row, "rank": context.rank} for row in part.rows[j * per_record : (j + 1) * per_record]])
        for j, (position, _) in enumerate(share)
    ]
    gathered = gather_in_order(entries, context)
    if not context.is_main:
        return None
    rows = [row for record_rows in gathered for row in record_rows]
    router = None
    if deblurrer.model.config.router and records:
        firsts = [record_rows[0] for record_rows in gathered]
        router = _router_report(
            [[row["router_probs"][task] for task in deblurrer.task_names] for row in firsts],
            [record.label for record in records],
            [row["group"] for row in firsts],
            deblurrer.task_names,
        )
    return BenchmarkResult(rows, router, part.method_name, part.group_by, list(variants))
