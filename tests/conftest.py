import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test, the old count restored after: tiny tensors on
    shared cores run many times faster on one thread than on two. A test module opts in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory):
    """A demoe-tiny model directory with small random weights on every branch."""
    import demoe

    torch.manual_seed(0)
    model = demoe.create_model("demoe-tiny")
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point and not name.endswith("running_var"):
                tensor.add_(torch.randn_like(tensor) * 0.05)
    directory = tmp_path_factory.mktemp("tiny-weights")
    model.save_pretrained(directory)
    return directory
