import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: fast on shared cores, and the same numerics as the subprocess runs
    (started with OMP_NUM_THREADS=1) that some tests compare against bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
