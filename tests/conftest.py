import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def randomize_(model: torch.nn.Module, scale: float = 0.2) -> torch.nn.Module:
    """Give every parameter and BatchNorm statistic random values, so every branch is active
    (fresh NAFBlocks have beta = gamma = 0 and would be the identity)."""
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype == torch.long:
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * scale)
    return model
