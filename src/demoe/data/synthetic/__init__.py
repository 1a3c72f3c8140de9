"""Synthetic all-in-one blur: physically motivated models of the five blur types, applied to
sharp photographs in linear light.

- `synthesize(sharp, task, rng, config)`: one (blurry, sharp) pair from one photograph;
- `SyntheticBlurDataset`: pairs of all types on the fly, for training;
- `SyntheticBlurBatches`, `synthesize_batch`: the same blur models for whole batches on the
  training device (torch; `data.train.kind: synthetic_device`);
- `SynthConfig`: every parameter range (see docs/synthetic-blur.md);
- `sharp_image_paths(folder)`, `shipped_photo_paths()`: photographs to start from.
"""

from demoe.data.synthetic.config import (
    DefocusConfig,
    DarkSceneConfig,
    GlobalMotionConfig,
    LocalMotionConfig,
    LowLightConfig,
    ShakeConfig,
    SynthConfig,
    SynthGlobalMotionConfig,
)
from demoe.data.synthetic.dataset import (
    SyntheticBlurDataset,
    load_photo,
    sharp_image_paths,
    shipped_photo_paths,
    synthesize_crop,
)
from demoe.data.synthetic.generator import SynthSample, synthesize, synthesize_sample
from demoe.data.synthetic.batched import BatchedSample, PhotoBank, SyntheticBlurBatches, synthesize_batch

__all__ = [
    "BatchedSample",
    "PhotoBank",
    "SyntheticBlurBatches",
    "synthesize_batch",
    "DefocusConfig",
    "DarkSceneConfig",
    "GlobalMotionConfig",
    "LocalMotionConfig",
    "LowLightConfig",
    "ShakeConfig",
    "SynthConfig",
    "SynthGlobalMotionConfig",
    "SynthSample",
    "SyntheticBlurDataset",
    "load_photo",
    "sharp_image_paths",
    "shipped_photo_paths",
    "synthesize",
    "synthesize_crop",
    "synthesize_sample",
]
