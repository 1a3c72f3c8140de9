"""`demoe.evaluation.eval_run`, the library behind `demoe eval`, called directly: the records,
the optional metrics, the run (rows, router study, cost) and what it writes; and
`comparison.write_tables` behind `demoe eval --combine -o`."""

import json

import numpy as np
import pytest

from demoe.config import TASK_NAMES
from demoe.data.manifest import PairRecord, write_manifest
from demoe.evaluation.benchmark import variants_from_options
from demoe.evaluation.comparison import combine_runs, read_run, render, write_tables
from demoe.evaluation.eval_run import (
    EvalOptions,
    Evaluation,
    MetricOptions,
    evaluate,
    load_metrics,
    read_records,
    variant_costs,
)
from demoe.evaluation.tables import to_json
from demoe.imageio import write_image
from demoe.inference import Deblurrer


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-run")
    rng = np.random.default_rng(0)
    records = []
    for task in TASK_NAMES[:3]:
        sharp = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
        blurry = np.clip(sharp.astype(int) + rng.integers(-20, 20, sharp.shape), 0, 255).astype(np.uint8)
        write_image(root / f"{task}_sharp.png", sharp)
        write_image(root / f"{task}_blur.png", blurry)
        for split in ("test", "train"):
            records.append(PairRecord(str(root / f"{task}_blur.png"), str(root / f"{task}_sharp.png"), task, "synthetic", split))
    return write_manifest(root / "manifest.jsonl", records)


@pytest.fixture(scope="module")
def deblurrer(tiny_weights_dir):
    return Deblurrer(str(tiny_weights_dir), device="cpu")


def test_read_records_filters_the_split_and_limits_each_group(manifest):
    assert [r.split for r in read_records([manifest])] == ["test"] * 3
    assert len(read_records([manifest], split=None)) == 6
    assert len(read_records([manifest, manifest], split="test", limit_per_group=1)) == 3  # one per (dataset, task)
    with pytest.raises(ValueError, match=r"no records of split 'val' in .*manifest.jsonl"):
        read_records([manifest], split="val")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_records([manifest.parent / "missing.jsonl"])


def test_read_records_names_the_first_missing_files_and_counts_the_rest(tmp_path):
    records = [PairRecord(str(tmp_path / f"gone{i}.png"), None, "defocus", "x", "test") for i in range(7)]
    path = write_manifest(tmp_path / "m.jsonl", records)
    with pytest.raises(FileNotFoundError, match=r"manifest files not found: .*gone0\.png.*gone4\.png \(and 2 more\)$"):
        read_records([path])


def test_load_metrics_skips_a_metric_whose_file_is_missing(tmp_path):
    metrics = load_metrics()
    assert metrics.extra is None and metrics.skipped == {} and metrics.no_reference.names == ("niqe",)
    missing = load_metrics(MetricOptions(lpips="alex", lpips_backbone=tmp_path / "none.pth", musiq_weights=tmp_path / "m.pth"))
    assert set(missing.skipped) == {"lpips", "musiq"} and missing.extra is None
    assert "none.pth" in missing.skipped["lpips"] and missing.no_reference.names == ("niqe",)


def test_evaluate_scores_every_variant_and_writes_the_outputs(manifest, deblurrer, tmp_path):
    records = read_records([manifest])
    variants = variants_from_options("auto", [1, 2], manual=True)
    run = evaluate(deblurrer, records, variants, EvalOptions(method_name="Tiny", progress=False, save_dir=tmp_path / "images"))
    assert isinstance(run, Evaluation) and run.costs == {}
    assert len(run.result.rows) == 3 * 3 and all("psnr" in row for row in run.result.rows)
    assert {row["method"] for row in run.result.rows} == {"Tiny k=1", "Tiny k=2", "Tiny† k=1"}
    assert run.result.router is not None and run.to_dict().keys() == {"table", "router", "per_image"}
    assert len(list((tmp_path / "images").rglob("*.png"))) == 3 * 3
    out = run.write(tmp_path / "out")
    assert sorted(path.name for path in out.iterdir()) == [
        "per_image.jsonl", "router.json", "table.csv", "table.json", "table.md"
    ]
    rows, costs = read_run(out)
    assert len(rows) == 9 and costs == {}


def test_evaluate_with_cost_adds_the_cost_column_and_cost_json(manifest, deblurrer, tmp_path):
    records = read_records([manifest], limit_per_group=1)[:1]
    variants = variants_from_options("defocus", include_input=True)
    run = evaluate(deblurrer, records, variants, EvalOptions(progress=False, cost_size=16, cost_repeats=1))
    assert set(run.costs) == {"DeMoE [defocus]"}  # the blurry input has no cost
    assert run.costs["DeMoE [defocus]"].params == deblurrer.model.num_parameters
    assert set(run.table().costs) == {"DeMoE [defocus]"} and not run.result.table().costs
    run.write(tmp_path)
    _, costs = read_run(tmp_path)
    assert costs == run.costs
    assert set(variant_costs(deblurrer, variants_from_options("auto", [1, 2]), "M", 16, 1)) == {"M k=1", "M k=2"}


def test_write_tables_writes_the_combined_table_in_its_layout(manifest, deblurrer, tmp_path):
    run = evaluate(deblurrer, read_records([manifest]), variants_from_options(), EvalOptions(progress=False))
    run.write(tmp_path / "run")
    table = combine_runs([tmp_path / "run"])
    paths = write_tables(table, tmp_path / "tables", "table7")
    assert [path.name for path in paths] == ["table7.md", "table7.csv", "table7.json"]
    assert (tmp_path / "tables" / "table7.md").read_text() == render(table, "table7")
    assert json.loads((tmp_path / "tables" / "table7.json").read_text()) == to_json(table)
    assert not list((tmp_path / "tables").glob(".*"))  # no temporary files left
