import re

import numpy as np
import pytest
from benchmark_trees import make_aio_blur_root, make_lolblur

from demoe.data.aioblur import (
    AIO_BLUR_DATASETS,
    BalanceConfig,
    balance_training_set,
    bin_quotas,
    build_aio_blur,
    build_aio_blur_ood,
    cached_mse,
    compute_mse,
    count_by_dataset_and_split,
    mse_bin_indices,
    pair_mse,
    repeat_factor,
    subsample_by_mse,
)
from demoe.data.manifest import PairRecord
from demoe.data.sources import DatasetLayoutError, read_lolblur


def test_repeat_factors_reproduce_table_4():
    assert repeat_factor(3758, 3758) == 1
    assert repeat_factor(2010, 3758) * 2010 == 4020  # Table 4: 4018 = 2 x 2009
    assert repeat_factor(2103, 3758) * 2103 == 4206
    assert repeat_factor(350, 3758) * 350 == 3850
    assert repeat_factor(5000, 3758) == 1  # larger sets are never cut by repetition
    with pytest.raises(ValueError):
        repeat_factor(0, 10)


def test_mse_bins_agree_with_numpy_histogram():
    mse = np.random.default_rng(0).gamma(1.0, 0.01, size=1000)
    bins = mse_bin_indices(mse, 4)
    np.testing.assert_array_equal(np.bincount(bins, minlength=4), np.histogram(mse, bins=4)[0])
    assert bins[np.argmax(mse)] == 3 and bins[np.argmin(mse)] == 0
    np.testing.assert_array_equal(mse_bin_indices(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 4), [0, 1, 2, 3, 3])
    assert mse_bin_indices(np.full(5, 0.2), 4).tolist() == [mse_bin_indices(np.full(5, 0.2), 4)[0]] * 5


def test_bin_quotas_hand_a_shortfall_to_bins_with_pairs_left():
    assert bin_quotas([9, 9, 9], 3) == [3, 3, 3]
    assert bin_quotas([5, 1, 10], 3) == [4, 1, 4]
    assert bin_quotas([1, 0, 2], 3) == [1, 0, 2]  # fewer pairs than the target: take them all
    assert bin_quotas([1400 * 5, 900, 2000], 1400) == [1650, 900, 1650]


@pytest.mark.parametrize("per_bin", [2, 3, 5])
def test_subsample_by_mse_drops_the_last_bin_and_draws_per_bin(per_bin):
    # bins of width 1 over [0, 4]: 8 values in bin 0, 6 in bin 1, 5 in bin 2, 2 in the dropped bin 3
    mse = np.array([0.1] * 8 + [1.5] * 6 + [2.5] * 5 + [3.5, 4.0])
    config = BalanceConfig(mse_per_bin=per_bin)
    chosen = subsample_by_mse(mse, np.random.default_rng(1), config)
    bins = mse_bin_indices(mse, 4)[chosen]
    assert np.all(np.diff(chosen) > 0) and 3 not in bins
    assert np.bincount(bins, minlength=3)[:3].tolist() == bin_quotas([8, 6, 5], per_bin)
    again = subsample_by_mse(mse, np.random.default_rng(1), config)
    np.testing.assert_array_equal(chosen, again)


def test_subsample_depends_on_the_seed():
    mse = np.random.default_rng(0).random(200)
    config = BalanceConfig(mse_per_bin=10)
    draws = {tuple(subsample_by_mse(mse, np.random.default_rng(seed), config)) for seed in range(5)}
    assert len(draws) == 5


def test_balance_config_is_validated():
    with pytest.raises(ValueError, match="mse_dropped_bins"):
        BalanceConfig(mse_bins=4, mse_dropped_bins=4)
    with pytest.raises(ValueError, match="mse_downscale"):
        BalanceConfig(mse_downscale=3)


def test_pair_mse_of_files_with_known_offset(tmp_path):
    root = make_lolblur(tmp_path / "LOLBlur", train={"0001": [10, 40]}, test={})
    records = read_lolblur(root, splits=("train",))
    expected = [(10 / 255) ** 2, (40 / 255) ** 2]
    for downscale in (1, 2, 4):
        np.testing.assert_allclose(compute_mse(records, downscale), expected, rtol=1e-5)
    np.testing.assert_allclose(compute_mse(records, 4, workers=2), expected, rtol=1e-5)
    assert pair_mse(records[0].blurry, records[0].sharp, 1) == pytest.approx(expected[0], rel=1e-5)


def test_mse_cache_is_reused_only_for_the_same_pairs(tmp_path):
    root = make_lolblur(tmp_path / "LOLBlur", train={"0001": [10, 40]}, test={})
    records = read_lolblur(root, splits=("train",))
    cache = tmp_path / "mse.csv"
    first = cached_mse(records, cache, 4, 1)
    cache.write_text(cache.read_text().replace(repr(float(first[0])), "0.5"))
    assert cached_mse(records, cache, 4, 1)[0] == 0.5  # read back, not recomputed
    assert cached_mse(records[:1], cache, 4, 1)[0] == pytest.approx(first[0])  # other pairs: recomputed
    assert cached_mse(records, cache, 2, 1)[0] == pytest.approx(first[0], rel=1e-5)  # other downscale


def _records(dataset: str, task: str, count: int) -> list[PairRecord]:
    return [PairRecord(f"{dataset}/b{i}.png", f"{dataset}/s{i}.png", task, dataset, "train") for i in range(count)]


def test_balance_training_set_at_the_release_sizes_gives_table_4():
    # the release train splits (Appendix B): RealBlur-J 3758, ReLoBlur 2010, LOLBlur 10200,
    # GoPro 2103, DPDD 70 % of 500; LOLBlur's MSE spread so that every kept bin has > 1400 pairs
    train = {
        "RealBlur-J": _records("RealBlur-J", "global_motion", 3758),
        "ReLoBlur": _records("ReLoBlur", "local_motion", 2010),
        "LOLBlur": _records("LOLBlur", "low_light", 10200),
        "GoPro": _records("GoPro", "synth_global_motion", 2103),
        "DPDD": _records("DPDD", "defocus", 350),
    }
    mse = {"LOLBlur": np.random.default_rng(0).uniform(0.0, 0.05, 10200)}
    mix = balance_training_set(train, seed=0, mse=mse)
    counts = {dataset: count for (dataset, _), count in count_by_dataset_and_split(mix.records).items()}
    # Table 4 lists ReLoBlur at 4018 (= 2 x 2009) and a total of 20032; the release has 2010 pairs
    assert counts == {"RealBlur-J": 3758, "ReLoBlur": 4020, "LOLBlur": 4200, "GoPro": 4206, "DPDD": 3850}
    assert len(mix.records) == 20034


def test_balance_training_set_with_small_targets():
    train = {
        "RealBlur-J": _records("RealBlur-J", "global_motion", 20),
        "ReLoBlur": _records("ReLoBlur", "local_motion", 11),
        "LOLBlur": _records("LOLBlur", "low_light", 60),
        "GoPro": _records("GoPro", "synth_global_motion", 7),
        "DPDD": _records("DPDD", "defocus", 2),
    }
    mse = {"LOLBlur": np.concatenate([np.linspace(0, 0.74, 40), np.linspace(0.75, 0.99, 18), [1.0, 1.0]])}
    config = BalanceConfig(mse_per_bin=5)
    mix = balance_training_set(train, seed=3, config=config, mse=mse)
    counts = count_by_dataset_and_split(mix.records)
    assert counts == {
        ("RealBlur-J", "train"): 20,
        ("ReLoBlur", "train"): 22,
        ("LOLBlur", "train"): 15,
        ("GoPro", "train"): 21,
        ("DPDD", "train"): 20,
    }
    lolblur = [r for r in mix.records if r.dataset == "LOLBlur"]
    assert len(set(lolblur)) == 15  # drawn without replacement
    assert not {train["LOLBlur"][i] for i in (58, 59)} & set(lolblur)  # the last bin is dropped
    assert mix.records[20:42] == train["ReLoBlur"] * 2
    rows = {row.dataset: row for row in mix.summary}
    assert rows["DPDD"].rule == "repeated x10" and rows["LOLBlur"].available == 60
    assert "bin sizes" in rows["LOLBlur"].rule
    assert balance_training_set(train, seed=3, config=config, mse=mse).records == mix.records
    assert balance_training_set(train, seed=4, config=config, mse=mse).records != mix.records


def test_build_aio_blur_from_a_fake_root(tmp_path):
    root = make_aio_blur_root(tmp_path / "datasets")
    mix = build_aio_blur(root, seed=0, config=BalanceConfig(mse_per_bin=2))
    counts = count_by_dataset_and_split(mix.records)
    # LOLBlur MSE ~ offset^2 = 4,4,9,9,16,100,121,144,400 | 441 | - | 1600: bins of width 399 hold
    # 9, 1, 0 and 1 (dropped) pairs; quotas of 2 -> [2, 1, 0], shortfall 3 to bin 0 -> 6 pairs
    assert counts == {
        ("RealBlur-J", "train"): 6,
        ("ReLoBlur", "train"): 6,
        ("LOLBlur", "train"): 6,
        ("GoPro", "train"): 8,
        ("DPDD", "train"): 6,
        ("RealBlur-J", "test"): 2,
        ("ReLoBlur", "test"): 1,
        ("LOLBlur", "test"): 2,
        ("GoPro", "test"): 2,
        ("DPDD", "test"): 2,
    }
    assert [row.dataset for row in mix.summary] == list(AIO_BLUR_DATASETS) * 2
    assert re.search(r"total\s+train\s+25\s+32", mix.format_summary())
    assert "bin sizes [9, 1, 0, 1]" in mix.summary[2].rule
    assert build_aio_blur(root, seed=0, config=BalanceConfig(mse_per_bin=2)).records == mix.records


def test_build_aio_blur_names_a_missing_dataset(tmp_path):
    root = make_aio_blur_root(tmp_path / "datasets")
    (root / "dd_dp_dataset_canon").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetLayoutError, match=r"DPDD release unpacked as .*dd_dp_dataset_canon"):
        build_aio_blur(root)
    mix = build_aio_blur(root, overrides={"DPDD": tmp_path / "elsewhere"}, config=BalanceConfig(mse_per_bin=2))
    assert count_by_dataset_and_split(mix.records)[("DPDD", "test")] == 2


def test_build_aio_blur_ood(tmp_path):
    root = make_aio_blur_root(tmp_path / "datasets")
    mix = build_aio_blur_ood(root)
    assert count_by_dataset_and_split(mix.records) == {("RealDOF", "test"): 3, ("RSBlur", "test"): 2, ("Real-LOLBlur", "test"): 4}
    row = mix.summary[-1]
    assert (row.available, row.in_manifest) == (6, 4) and "2 RealBlur-J images left out" in row.rule
    assert all(r.sharp is None for r in mix.records if r.dataset == "Real-LOLBlur")
