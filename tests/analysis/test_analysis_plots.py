import numpy as np
import pytest

from demoe.analysis import plots
from demoe.analysis.similarity import LayerSimilarity

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


LAYERS = (
    LayerSimilarity("encoders.0.0.conv1.weight", "conv1x1", 0.8, 0.9),
    LayerSimilarity("encoders.0.0.conv2.weight", "conv3x3", 0.95, 0.97),
    LayerSimilarity("encoders.0.0.norm1.weight", "norm", float("nan"), float("nan")),
    LayerSimilarity("encoders.0.0.sca.proj.weight", "sca", -0.2, 0.4),
)


def test_layer_bars(tmp_path):
    other = tuple(LayerSimilarity(l.name, l.type, 0.5, 0.5) for l in LAYERS)
    assert_png(plots.plot_layer_bars({"a vs b": LAYERS, "a vs c": other}, "pearson", tmp_path / "bars.png", "title"))
    assert_png(plots.plot_layer_bars({"a vs b": LAYERS}, "cka", tmp_path / "sub" / "cka.png", line=None))
    with pytest.raises(ValueError, match="metric"):
        plots.plot_layer_bars({"a vs b": LAYERS}, "spearman", tmp_path / "x.png")


def test_heatmaps(tmp_path):
    matrix = np.array([[1.0, 0.3, np.nan], [0.3, 1.0, 0.7], [np.nan, 0.7, 1.0]])
    path = plots.plot_heatmaps({"conv1x1": matrix, "sca": np.eye(3)}, ["a", "b", "c"], tmp_path / "heat.png")
    assert_png(path)
    with pytest.raises(ValueError, match="shape"):
        plots.plot_heatmaps({"conv1x1": np.eye(2)}, ["a", "b", "c"], tmp_path / "bad.png")


def test_router_plots(tmp_path):
    names = ("defocus", "global_motion", "local_motion")
    assert_png(plots.plot_confusion(np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]]), names, tmp_path / "confusion.png"))
    means = {"GoPro": np.array([0.1, 0.8, 0.1]), "DPDD": np.array([0.7, 0.2, 0.1])}
    assert_png(plots.plot_mean_router_output(means, names, tmp_path / "mean.png"))


def test_tsne_scatter(tmp_path):
    coords = np.random.default_rng(0).normal(size=(12, 2))
    assert_png(plots.plot_tsne(coords, ["A"] * 6 + ["B"] * 6, tmp_path / "tsne.png"))
    with pytest.raises(ValueError, match="coords"):
        plots.plot_tsne(coords, ["A"] * 5, tmp_path / "bad.png")


def test_short_layer_names():
    assert plots.short_layer_name("encoders.0.1.conv2.weight") == "enc0.1.conv2"
    assert plots.short_layer_name("decoder_moes.1.experts.*.sca.proj.weight") == "dmoe1.sca"
