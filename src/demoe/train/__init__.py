"""Training: the paper's two-stage recipe from a YAML config, on one device or under torchrun.

    from demoe.train import load_config, train
    config = load_config("configs/smoke.yaml", overrides=["train.total_steps=20"])
    result = train(config, "runs/smoke")           # writes checkpoints, last/, config.yaml
"""

from demoe.train.config import ConfigError, TrainConfig, apply_override, load_config, parse_config
from demoe.train.loop import NonFiniteLossError, RunDirError, TrainResult, build_training_model, train

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "RunDirError",
    "TrainConfig",
    "TrainResult",
    "apply_override",
    "build_training_model",
    "load_config",
    "parse_config",
    "train",
]
