"""Weight similarity between models of one architecture (paper Sec. 3.1, App. A and D).

Every layer is seen as a set of filters: row i of the layer's weight reshaped to
(C_out, fan_in) is the weights of output channel i. Two measures compare a layer of model A
with the same layer of model B:

- Pearson (Eq. 3-4): the correlation of filter i of A with filter i of B, averaged over the
  C_out filters. A 1-D weight (LayerNorm scale, one scalar per channel) has filters of one
  element, whose correlation is undefined; there the whole vector is correlated as one filter.
- CKA (Eq. 5-6, Kornblith et al. 2019) with an RBF kernel: the C_out filters are the examples,
  X = (C_out, fan_in), K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2)), and
  CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with HSIC(K, L) = tr(K H L H) / (n - 1)^2.

Layers compared (the paper's four types, NAFBlock layers only; stem, downsampling,
upsampling and router layers are left out, as are all biases and the layer scales beta/gamma):

    conv1x1  conv1, conv3, conv4, conv5 weights   (C_out, C_in, 1, 1)
    conv3x3  conv2 (depthwise) weight              (C, 1, 3, 3)
    norm     norm1, norm2 weights                  (C,)
    sca      sca.proj weight                       (C, C, 1, 1)

Undefined values (a filter or layer without variance, e.g. fresh LayerNorm scales that are all
1) are NaN; means skip them.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

LAYER_TYPES: tuple[str, ...] = ("conv1x1", "conv3x3", "norm", "sca")

ArrayLike = np.ndarray | torch.Tensor

# Parameter-name endings of the NAFBlock layers, with the weight rank each must have.
_NAME_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"(^|\.)sca\.proj\.weight$"), "sca"),
    (re.compile(r"(^|\.)norm[12]\.weight$"), "norm"),
    (re.compile(r"(^|\.)conv2\.weight$"), "conv3x3"),
    (re.compile(r"(^|\.)conv[1345]\.weight$"), "conv1x1"),
)
_EXPERT_KEY = re.compile(r"^(?P<block>.+)\.experts\.(?P<expert>\d+)\.(?P<layer>.+)$")


def layer_type(name: str, shape: Sequence[int]) -> str | None:
    """The paper's layer type of a parameter (by name and shape), or None if not compared.

    >>> layer_type("encoders.0.0.conv2.weight", (16, 1, 3, 3))
    'conv3x3'
    >>> layer_type("encoders.0.0.conv2.bias", (16,)) is None
    True
    """
    shape = tuple(shape)
    for pattern, kind in _NAME_RULES:
        if not pattern.search(name):
            continue
        if kind == "norm":
            return kind if len(shape) == 1 else None
        if kind == "conv3x3":
            return kind if len(shape) == 4 and shape[2:] == (3, 3) else None
        return kind if len(shape) == 4 and shape[2:] == (1, 1) else None
    return None


def as_filters(weight: ArrayLike) -> np.ndarray:
    """A weight as (C_out, fan_in) float64: one row per output channel (filter).

    Shape: (C_out, ...) -> (C_out, prod(...)); a 1-D weight (C,) becomes (C, 1).
    """
    array = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError("a layer weight needs at least one dimension, got a scalar")
    return array.reshape(array.shape[0], -1)


def pearson_per_filter(weight_a: ArrayLike, weight_b: ArrayLike) -> np.ndarray:
    """Eq. 3 for every filter: (C_out,) correlations of row i of A with row i of B.

    Inputs of the same shape (C_out, ...); a filter without variance in A or B gives NaN.
    1-D weights are correlated as one filter (result of shape (1,)).
    """
    a, b = as_filters(weight_a), as_filters(weight_b)
    if a.shape != b.shape:
        raise ValueError(f"weights must have the same shape, got {a.shape} and {b.shape}")
    if a.shape[1] == 1:  # one scalar per channel: the whole vector is the filter
        a, b = a.T, b.T
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    numerator = (a * b).sum(axis=1)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = numerator / denominator
    r[denominator <= 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def layer_pearson(weight_a: ArrayLike, weight_b: ArrayLike) -> float:
    """Eq. 4: the mean over filters of the per-filter Pearson correlation (NaN filters skipped;
    NaN if none is defined). Range [-1, 1]."""
    r = pearson_per_filter(weight_a, weight_b)
    defined = r[~np.isnan(r)]
    return float(defined.mean()) if defined.size else math.nan


def rbf_gram(x: ArrayLike, threshold: float = 1.0) -> np.ndarray:
    """RBF Gram matrix of the rows of x (n, p) -> (n, n).

    Bandwidth by the median heuristic of Kornblith et al. (2019): sigma^2 = threshold^2 *
    median of the squared pairwise distances (over all n^2 entries, diagonal included, as in
    their reference code; if that median is 0, the median of the non-zero ones). Scaling x by
    any non-zero factor leaves the Gram matrix unchanged.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    x = as_filters(x)
    dots = x @ x.T
    norms = np.diag(dots)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * dots, 0.0)
    median = float(np.median(squared))
    if median <= 0:
        # More than half of the pairs coincide (e.g. LayerNorm scales mostly still 1): take the
        # scale from the pairs that differ; all rows equal -> constant Gram matrix.
        nonzero = squared[squared > 0]
        if nonzero.size == 0:
            return np.ones_like(squared)
        median = float(np.median(nonzero))
    return np.exp(-squared / (2 * threshold**2 * median))


def hsic(gram_k: np.ndarray, gram_l: np.ndarray) -> float:
    """Empirical HSIC (Gretton et al. 2005): tr(K H L H) / (n - 1)^2, H = I - 11^T / n.

    The paper's printed Eq. 6 shows 1 / (n - 1); the constant cancels in CKA.
    """
    n = gram_k.shape[0]
    if gram_k.shape != (n, n) or gram_l.shape != (n, n):
        raise ValueError(f"Gram matrices must both be (n, n), got {gram_k.shape} and {gram_l.shape}")
    if n < 2:
        raise ValueError("HSIC needs at least 2 examples")
    centered_k = gram_k - gram_k.mean(axis=0, keepdims=True)  # K H
    centered_k = centered_k - centered_k.mean(axis=1, keepdims=True)  # H K H
    # tr(K H L H) = tr(H K H L) = sum((H K H) * L) for symmetric L.
    return float((centered_k * gram_l).sum()) / (n - 1) ** 2


def cka_rbf(x: ArrayLike, y: ArrayLike, threshold: float = 1.0) -> float:
    """RBF-kernel CKA (Eq. 5) of two example matrices x (n, p) and y (n, q), in [0, 1].

    Rows are examples (here: filters). NaN when either Gram matrix has no centred variance
    (all rows equal). Invariant to isotropic scaling and orthogonal transforms of x and y.
    """
    x, y = as_filters(x), as_filters(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of examples, got {x.shape[0]} and {y.shape[0]}")
    gram_k, gram_l = rbf_gram(x, threshold), rbf_gram(y, threshold)
    self_k, self_l = hsic(gram_k, gram_k), hsic(gram_l, gram_l)
    if self_k <= 1e-12 or self_l <= 1e-12:  # a constant Gram matrix: similarity undefined
        return math.nan
    denominator = math.sqrt(self_k * self_l)
    return float(np.clip(hsic(gram_k, gram_l) / denominator, 0.0, 1.0))


@dataclass(frozen=True)
class LayerSimilarity:
    name: str  # parameter name, e.g. "encoders.0.0.conv2.weight"
    type: str  # one of LAYER_TYPES
    pearson: float  # Eq. 4, NaN if undefined
    cka: float  # Eq. 5 with RBF kernel, NaN if undefined

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "pearson": _json_float(self.pearson), "cka": _json_float(self.cka)}


@dataclass(frozen=True)
class PairSimilarity:
    a: str  # label of the first model (or expert)
    b: str
    layers: tuple[LayerSimilarity, ...]

    @property
    def by_type(self) -> dict[str, dict]:
        return summarize_by_type(self.layers)

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "layers": [layer.to_dict() for layer in self.layers],
            "by_type": self.by_type,
        }


def compared_layers(state_dict: Mapping[str, ArrayLike]) -> dict[str, str]:
    """{parameter name: layer type} for the layers of a state dict that are compared, in order."""
    return {
        name: kind
        for name, tensor in state_dict.items()
        if (kind := layer_type(name, tuple(tensor.shape))) is not None
    }


def layer_similarities(
    state_a: Mapping[str, ArrayLike],
    state_b: Mapping[str, ArrayLike],
    threshold: float = 1.0,
) -> tuple[LayerSimilarity, ...]:
    """Pearson and CKA for every compared layer of two state dicts of the same architecture."""
    layers_a, layers_b = compared_layers(state_a), compared_layers(state_b)
    if layers_a.keys() != layers_b.keys():
        only_a = sorted(layers_a.keys() - layers_b.keys())[:3]
        only_b = sorted(layers_b.keys() - layers_a.keys())[:3]
        raise ValueError(
            f"the models do not share an architecture: layers only in the first {only_a}, "
            f"only in the second {only_b}"
        )
    results = []
    for name, kind in layers_a.items():
        weight_a, weight_b = state_a[name], state_b[name]
        if tuple(weight_a.shape) != tuple(weight_b.shape):
            raise ValueError(
                f"layer {name} has shape {tuple(weight_a.shape)} in the first model and "
                f"{tuple(weight_b.shape)} in the second"
            )
        results.append(
            LayerSimilarity(name, kind, layer_pearson(weight_a, weight_b), cka_rbf(weight_a, weight_b, threshold))
        )
    return tuple(results)


def summarize_by_type(layers: Sequence[LayerSimilarity]) -> dict[str, dict]:
    """{type: {"pearson": mean, "cka": mean, "num_layers": n}} for the types present.

    Means skip NaN layers; None where no layer of the type has a defined value.
    """
    summary = {}
    for kind in LAYER_TYPES:
        chosen = [layer for layer in layers if layer.type == kind]
        if not chosen:
            continue
        summary[kind] = {
            "pearson": _json_float(_nanmean([layer.pearson for layer in chosen])),
            "cka": _json_float(_nanmean([layer.cka for layer in chosen])),
            "num_layers": len(chosen),
        }
    return summary


def mean_over_pairs(pairs: Sequence[PairSimilarity]) -> tuple[LayerSimilarity, ...]:
    """Per layer, the mean Pearson and CKA over several pairs (NaN skipped)."""
    if not pairs:
        raise ValueError("need at least one pair")
    first = pairs[0].layers
    for pair in pairs[1:]:
        if [layer.name for layer in pair.layers] != [layer.name for layer in first]:
            raise ValueError("pairs compare different layers")
    return tuple(
        LayerSimilarity(
            layer.name,
            layer.type,
            _nanmean([pair.layers[index].pearson for pair in pairs]),
            _nanmean([pair.layers[index].cka for pair in pairs]),
        )
        for index, layer in enumerate(first)
    )


def compare_models(
    state_dicts: Sequence[Mapping[str, ArrayLike]],
    names: Sequence[str],
    threshold: float = 1.0,
) -> list[PairSimilarity]:
    """Every pair (i < j) of models: per-layer Pearson and CKA.

    state_dicts: two or more state dicts of the same architecture; names: their labels.
    """
    if len(state_dicts) < 2:
        raise ValueError(f"need at least two models to compare, got {len(state_dicts)}")
    if len(names) != len(state_dicts):
        raise ValueError(f"got {len(names)} names for {len(state_dicts)} models")
    return [
        PairSimilarity(names[i], names[j], layer_similarities(state_dicts[i], state_dicts[j], threshold))
        for i, j in itertools.combinations(range(len(state_dicts)), 2)
    ]


def similarity_report(pairs: Sequence[PairSimilarity], names: Sequence[str]) -> dict:
    """The JSON of `demoe analyze similarity`.

    {"models": [...], "layers": [...], "by_type": {...}, "pairs": [{"a", "b", "layers",
    "by_type"}]}: top-level "layers" and "by_type" are the mean over all pairs (with two models,
    exactly the one pair's values).
    """
    mean_layers = mean_over_pairs(pairs)
    return {
        "models": list(names),
        "layers": [layer.to_dict() for layer in mean_layers],
        "by_type": summarize_by_type(mean_layers),
        "pairs": [pair.to_dict() for pair in pairs],
    }


def pairwise_matrix(pairs: Sequence[PairSimilarity], names: Sequence[str], kind: str, metric: str) -> np.ndarray:
    """(M, M) symmetric matrix of the per-type mean `metric` ("pearson"|"cka") between models;
    diagonal 1, NaN where undefined. Used for the heat maps (Fig. 9, Fig. 11)."""
    if metric not in ("pearson", "cka"):
        raise ValueError(f"metric must be 'pearson' or 'cka', got {metric!r}")
    index = {name: i for i, name in enumerate(names)}
    matrix = np.eye(len(names))
    for pair in pairs:
        values = [getattr(layer, metric) for layer in pair.layers if layer.type == kind]
        value = _nanmean(values) if values else math.nan
        i, j = index[pair.a], index[pair.b]
        matrix[i, j] = matrix[j, i] = value
    return matrix


# ---------------------------------------------------------------------------------------------
# Expert specialisation (App. D, Fig. 11): the same comparison between the experts of each MoE
# block of one model.


def moe_blocks(state_dict: Mapping[str, ArrayLike]) -> dict[str, dict[int, dict[str, ArrayLike]]]:
    """{block prefix: {expert index: {layer name inside the expert: weight}}}.

    Block prefixes are e.g. "middle_moe" and "decoder_moes.0"; layer names e.g. "conv2.weight".
    """
    blocks: dict[str, dict[int, dict[str, ArrayLike]]] = {}
    for name, tensor in state_dict.items():
        match = _EXPERT_KEY.match(name)
        if match is None:
            continue
        experts = blocks.setdefault(match["block"], {})
        experts.setdefault(int(match["expert"]), {})[match["layer"]] = tensor
    return blocks


@dataclass(frozen=True)
class BlockExpertSimilarity:
    block: str  # MoE block prefix, e.g. "decoder_moes.0"
    experts: tuple[str, ...]  # expert labels (task names), in expert order
    pairs: tuple[PairSimilarity, ...]  # every expert pair i < j; layer names inside the block

    def to_dict(self) -> dict:
        return {"block": self.block, "experts": list(self.experts), "pairs": [p.to_dict() for p in self.pairs]}


def compare_experts(
    state_dict: Mapping[str, ArrayLike],
    expert_names: Sequence[str],
    threshold: float = 1.0,
) -> list[BlockExpertSimilarity]:
    """For each MoE block, Pearson and CKA between every pair of its experts (Fig. 11)."""
    blocks = moe_blocks(state_dict)
    if not blocks:
        raise ValueError("the model has no MoE blocks (no '*.experts.N.*' parameters)")
    results = []
    for block, experts in blocks.items():
        indices = sorted(experts)
        if len(indices) > len(expert_names):
            raise ValueError(f"{block} has {len(indices)} experts but {len(expert_names)} names were given")
        labels = [expert_names[i] for i in indices]
        pairs = compare_models([experts[i] for i in indices], labels, threshold)
        named = tuple(
            PairSimilarity(
                pair.a,
                pair.b,
                tuple(
                    LayerSimilarity(f"{block}.experts.*.{layer.name}", layer.type, layer.pearson, layer.cka)
                    for layer in pair.layers
                ),
            )
            for pair in pairs
        )
        results.append(BlockExpertSimilarity(block, tuple(labels), named))
    return results


def mean_expert_matrix(
    blocks: Sequence[BlockExpertSimilarity], expert_names: Sequence[str], kind: str, metric: str
) -> np.ndarray:
    """(E, E) per-type mean `metric` between experts, averaged over the MoE blocks (NaN skipped;
    NaN where no block has a defined value). Diagonal 1. The heat map of Fig. 11."""
    stack = np.stack([pairwise_matrix(block.pairs, expert_names, kind, metric) for block in blocks])
    finite = np.isfinite(stack)
    counts = finite.sum(axis=0)
    sums = np.where(finite, stack, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


def experts_report(blocks: Sequence[BlockExpertSimilarity]) -> dict:
    """The JSON of `demoe analyze experts`: per block the expert pairs; top-level "layers" and
    "by_type" are means over all expert pairs of all blocks (layer names "<block>.experts.*.<layer>")."""
    layers: list[LayerSimilarity] = []
    for block in blocks:
        layers.extend(mean_over_pairs(block.pairs))
    return {
        "layers": [layer.to_dict() for layer in layers],
        "by_type": summarize_by_type(layers),
        "blocks": [block.to_dict() for block in blocks],
    }


def _nanmean(values: Sequence[float]) -> float:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def _json_float(value: float | None) -> float | None:
    """NaN (undefined) becomes None, i.e. JSON null."""
    if value is None or math.isnan(value):
        return None
    return float(value)
