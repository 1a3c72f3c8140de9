"""Random weights for test models: the one helper every test folder imports.

(A module with a unique name rather than a fixture in conftest.py: test folders with their own
conftest.py, and helpers called at import time, can import it the same way.)
"""

from __future__ import annotations

import torch


def randomize_(model: torch.nn.Module, seed: int = 1234, scale: float = 0.2) -> torch.nn.Module:
    """Give every floating parameter and buffer random values, in place, so that every branch is
    active (fresh NAFBlocks have beta = gamma = 0 and would be the identity): N(0, scale^2),
    and U(0.5, 1.5) for BatchNorm running variances. Deterministic in `seed`; returns `model`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    return model
