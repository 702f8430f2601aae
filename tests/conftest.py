import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# One torch thread per pytest-xdist worker (`./dev test` runs 2 workers), two at most otherwise.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, torch.get_num_threads())))

# Property tests draw their examples from a fixed seed: a failure reproduces on every run and machine,
# and the suite's time does not vary. `pytest --hypothesis-profile=explore` searches with fresh seeds.
settings.register_profile("default", derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
