"""Encoder (bottleneck) features of a model and their t-SNE embedding (paper Fig. 4 / Fig. 13).

The paper embeds CLIP features of the encoder output; demoe embeds the encoder's bottleneck
features themselves, globally average pooled to one C-vector per image (no CLIP, which would be
a download). Images are read from a manifest and downscaled so that their longer side is at
most `max_side` (the encoder's cost grows with the pixel count), by the router's one downscaling
policy (`demoe.inference.pipeline.router_view`); encoder and router are the model's own
(`model.encode`, `model.route`), so `max_side=0` gives the probabilities of `demoe classify`
and of `model(x)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from demoe.data.manifest import PairRecord
from demoe.imageio import as_rgb, read_array, to_float
from demoe.inference.pipeline import router_view
from demoe.model import DeblurUNet


def bottleneck_features(model: DeblurUNet, x: torch.Tensor) -> torch.Tensor:
    """The encoder's output (the router's input) for images x: `model.encode(x).bottleneck`.

    Shape: (B, 3, H, W) in [0, 1] -> (B, C_bottleneck, H', W').
    """
    return model.encode(x).bottleneck


def router_probs_from_features(model: DeblurUNet, features: torch.Tensor) -> torch.Tensor:
    """The router's softmax (B, E) for bottleneck features (B, C, H', W'); model in eval mode."""
    return model.route(features).probs


def load_image_tensor(path: str, max_side: int = 0) -> torch.Tensor:
    """An image file as a (1, 3, H, W) float tensor in [0, 1], area-downscaled (`router_view`)
    so that max(H, W) <= max_side; max_side 0 keeps the full resolution."""
    if max_side < 0:
        raise ValueError(f"max_side must be >= 0, got {max_side}")
    pixels = router_view(as_rgb(read_array(path)), max_side=max_side)  # (H, W, 3), file dtype
    return torch.from_numpy(to_float(pixels)).permute(2, 0, 1)[None]  # (1, 3, H, W)


@dataclass(frozen=True)
class EncodedSet:
    """Per image of a manifest: pooled encoder features and (if the model has one) router output."""

    features: np.ndarray  # (N, C_bottleneck) globally average pooled bottleneck features
    router_probs: np.ndarray | None  # (N, E) router softmax, None without router
    labels: np.ndarray  # (N,) int, the records' task index (router class)
    datasets: list[str]  # (N,) dataset names
    paths: list[str]  # (N,) blurry image paths


@torch.inference_mode()
def encode_records(
    model: DeblurUNet,
    records: Sequence[PairRecord],
    max_side: int = 1024,
    device: str | torch.device = "cpu",
    progress: Callable[[Iterable], Iterable] | None = None,
) -> EncodedSet:
    """Run the encoder (and router) over the blurry images of `records`, one image at a time.

    The model is put in eval mode. `progress` wraps the record iterator (e.g. tqdm).
    """
    if not records:
        raise ValueError("no records to encode")
    model = model.eval().to(device)
    iterator: Iterable[PairRecord] = progress(records) if progress is not None else records
    pooled, probs = [], []
    for record in iterator:
        image = load_image_tensor(record.blurry, max_side).to(device)
        features = bottleneck_features(model, image)  # (1, C, H', W')
        pooled.append(features.mean(dim=(2, 3)).float().cpu().numpy()[0])
        if model.router is not None:
            probs.append(router_probs_from_features(model, features).float().cpu().numpy()[0])
    return EncodedSet(
        features=np.stack(pooled),
        router_probs=np.stack(probs) if probs else None,
        labels=np.array([record.label for record in records], dtype=np.int64),
        datasets=[record.dataset for record in records],
        paths=[record.blurry for record in records],
    )


def tsne_embedding(features: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init) of feature rows. Shape: (N, D) -> (N, 2).

    Features are standardised per dimension first. The perplexity is capped at (N - 1) / 3 so
    that small sets work (scikit-learn requires perplexity < N). Needs N >= 4.
    """
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    count = features.shape[0]
    if count < 4:
        raise ValueError(f"t-SNE needs at least 4 images, got {count}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    std = features.std(axis=0)
    standardised = (features - features.mean(axis=0)) / np.where(std > 0, std, 1.0)
    tsne = TSNE(
        n_components=2,
        perplexity=min(perplexity, (count - 1) / 3),
        init="pca",
        random_state=seed,
    )
    return tsne.fit_transform(standardised)
