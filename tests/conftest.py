import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="module")
def one_thread():
    """Modules of tiny models request this: one intra-op thread is as fast for them and immune to the stalls of a
    second thread on a busy 2-core machine; the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
