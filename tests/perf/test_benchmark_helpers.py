"""Correctness of the benchmark's comparison code (no timing assertions)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from demoe import create_model

from .test_fast_layers import trained_looking_

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_inference.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_inference", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_authors_routing_reimplementation_computes_our_sparse_routing(bench):
    model = trained_looking_(create_model("demoe-tiny")).eval()
    weights = torch.eye(5)[[4, 0, 4, 2]]
    x = torch.rand(4, 3, 24, 24)
    with torch.inference_mode():
        ours = model(x, task=weights).image
        with bench.authors_routing(model):
            theirs = model(x, task=weights).image
        again = model(x, task=weights).image  # the patch is undone
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, ours, atol=0, rtol=0)
    assert "_dense_or_plan" not in vars(model)


def test_tiled_restore_covers_the_image_and_equals_untiled_for_one_tile(bench):
    model = trained_looking_(create_model("demoe-tiny")).eval()
    image = torch.rand(1, 3, 40, 70)
    restored, ran, total = bench.tiled_restore(model, image, tile=32, overlap=8)
    assert ran == total == len(bench.tile_origins(40, 32, 24)) * len(bench.tile_origins(70, 32, 24))
    assert restored.shape == image.shape
    whole, ran, total = bench.tiled_restore(model, image, tile=128, overlap=8)
    with torch.inference_mode():
        expected = model(image).image
    torch.testing.assert_close(whole, expected)
    assert bench.tile_origins(70, 32, 24) == [0, 24, 38]


def test_doc_block_is_replaced_between_markers(bench, tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Perf\n\nintro\n\n{bench.BEGIN}\nold\n{bench.END}\n\nafter\n")
    bench.write_doc(doc, f"{bench.BEGIN}\nnew\n{bench.END}")
    assert doc.read_text() == f"# Perf\n\nintro\n\n{bench.BEGIN}\nnew\n{bench.END}\n\nafter\n"
