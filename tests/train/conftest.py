import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op thread (tests/conftest.py) for every training test: fast on shared cores,
    and the same numerics as the subprocess runs (started with OMP_NUM_THREADS=1) that some
    tests compare against bit for bit."""
