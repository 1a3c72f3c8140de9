import csv
import io

import pytest

from demoe.evaluation.tables import build_table, method_label, to_csv, to_json, to_markdown
from demoe.evaluation.cost import Cost


def rows():
    result = []
    for method, offset in (("NAFNet", 0.0), (method_label("DeMoE", 1), 0.5), (method_label("DeMoE", 1, manual=True), 1.0)):
        for dataset, base in (("GoPro", 29.0), ("DPDD", 25.0)):
            for image in range(2):
                result.append({"dataset": dataset, "method": method, "psnr": base + offset + image,
                               "ssim": 0.8 + offset / 10, "lpips": 0.3 - offset / 10})
    # A blurry-only dataset with no-reference metrics, evaluated by one method.
    result.append({"dataset": "Real-LOLBlur", "method": "NAFNet", "niqe": 6.0, "psnr": None})
    return result


def test_method_labels():
    assert method_label("DeMoE", 1) == "DeMoE k=1"
    assert method_label("DeMoE", 3, manual=True) == "DeMoE† k=3"
    assert method_label("NAFNet") == "NAFNet"


def test_table_means_and_average():
    table = build_table(rows(), datasets=["GoPro", "DPDD"])
    assert table.methods == ("NAFNet", "DeMoE k=1", "DeMoE† k=1")
    cell = table.cells[("DeMoE k=1", "GoPro")]
    assert cell.count == 2 and cell.means["psnr"] == pytest.approx(30.0)
    assert table.metrics["GoPro"] == ("psnr", "ssim", "lpips")
    assert table.average_metrics == ("psnr", "ssim", "lpips")
    # Average over datasets of the per-dataset means: (29.5 + 25.5) / 2 for NAFNet.
    assert table.average("NAFNet")["psnr"] == pytest.approx(27.5)


def test_markdown_layout_and_highlighting():
    table = build_table(rows(), datasets=["GoPro", "DPDD"])
    text = to_markdown(table)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| Method | GoPro<br>PSNR↑ / SSIM↑ / LPIPS↓ | DPDD<br>")
    assert lines[0].rstrip().endswith("Average<br>PSNR↑ / SSIM↑ / LPIPS↓ |")
    assert len(lines) == 2 + 3
    dagger = next(line for line in lines if line.startswith("| DeMoE† k=1"))
    assert "**30.50** / **0.900** / **0.200**" in dagger  # best of every metric
    plain = next(line for line in lines if line.startswith("| DeMoE k=1"))
    assert "<u>30.00</u>" in plain  # second best


def test_datasets_with_different_metrics_and_missing_cells():
    table = build_table(rows())
    assert table.datasets == ("GoPro", "DPDD", "Real-LOLBlur")
    assert table.metrics["Real-LOLBlur"] == ("niqe",)
    assert table.average_metrics == ()  # no metric shared by every dataset
    text = to_markdown(table, highlight=False)
    assert "Average" not in text and "**" not in text
    assert "| DeMoE k=1 | 30.00 / 0.850 / 0.250 | 26.00 / 0.850 / 0.250 | - |" in text


def test_csv_and_json_content():
    costs = {"NAFNet": Cost(params=10_080_000, macs_g=11.02, latency_ms=8.0)}
    table = build_table(rows(), datasets=["GoPro", "DPDD"], costs=costs)
    parsed = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [line["method"] for line in parsed] == ["NAFNet", "DeMoE k=1", "DeMoE† k=1"]
    assert float(parsed[1]["GoPro/psnr"]) == pytest.approx(30.0)
    assert parsed[1]["GoPro/count"] == "2"
    assert float(parsed[0]["Average/psnr"]) == pytest.approx(27.5)
    assert parsed[0]["params"] == "10080000" and parsed[1]["params"] == ""
    data = to_json(table)
    assert data["datasets"] == ["GoPro", "DPDD"]
    assert data["rows"][2]["method"] == "DeMoE† k=1"
    assert data["rows"][2]["results"]["DPDD"] == {"psnr": pytest.approx(26.5), "ssim": pytest.approx(0.9),
                                                  "lpips": pytest.approx(0.2), "count": 2}
    assert data["rows"][0]["cost"]["macs_g"] == 11.02
    assert "cost" not in data["rows"][1]
    assert "Params (M) / MACs (G) / Runtime (ms)" in to_markdown(table)
    assert "10.08 / 11.02 / 8.0" in to_markdown(table)


def test_rows_without_method_are_rejected():
    with pytest.raises(ValueError, match="'method'"):
        build_table([{"dataset": "GoPro", "psnr": 30.0}])
