import pytest

import demoe
from demoe.config import get_preset
from demoe.evaluation.cost_table import (
    CostRow,
    comparisons,
    cost_table,
    ensemble_member_config,
    ensemble_row,
    to_markdown,
)
from demoe.model import DeblurUNet


def test_ensemble_member_of_demoe_is_the_paper_baseline():
    member = ensemble_member_config(get_preset("demoe"))
    baseline = get_preset("nafnet-baseline")
    assert member.replace(name=baseline.name) == baseline
    # 5 x 10.08 M = the paper's 50.4 M of DeMoE-5 (Sec. 5).
    params = DeblurUNet(member).num_parameters
    assert 5 * params / 1e6 == pytest.approx(50.4, abs=0.05)


def test_ensemble_row_multiplies_parameters_only():
    member = CostRow("baseline", 1000, 2.0, 3.0)
    row = ensemble_row(member, 5, "DeMoE-5")
    assert (row.params, row.macs_g, row.latency_ms, row.ensemble_of) == (5000, 2.0, 3.0, 5)
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_row(member, 0, "empty")


def test_cost_table_adds_an_ensemble_after_each_moe_model():
    models = [("baseline", demoe.create_model("nafnet-tiny-router")), ("tiny", demoe.create_model("demoe-tiny"))]
    rows = cost_table(models, size=32, repeats=1, warmup=0)
    assert [row.model for row in rows] == ["baseline", "tiny", "tiny-5 ensemble"]
    member = DeblurUNet(ensemble_member_config(models[1][1].config))
    assert rows[2].params == 5 * member.num_parameters
    assert rows[1].macs_g > 0 and rows[1].latency_ms > 0
    notes = comparisons(rows)
    assert len(notes) == 1 and notes[0].startswith("tiny vs tiny-5 ensemble:")
    text = to_markdown(rows, 32, 1)
    assert "| tiny-5 ensemble |" in text and "MACs (G) at 32x32" in text
    assert [row.model for row in cost_table(models, size=32, repeats=1, warmup=0, with_ensembles=False)] == ["baseline", "tiny"]
