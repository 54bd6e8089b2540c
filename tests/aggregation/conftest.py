import numpy as np
import pytest

from fedledger.aggregation import ClientUpdate


def updates_for(seed: int, count: int, size: int, spread: float = 0.05) -> tuple[np.ndarray, list[ClientUpdate]]:
    """A global model and `count` local models near it, with uneven sample counts."""
    rng = np.random.default_rng(seed)
    global_params = rng.uniform(-1, 1, size).astype(np.float32)
    updates = [ClientUpdate(client=f"hospital-{i}",
                            params=(global_params + rng.normal(0, spread, size)).astype(np.float32),
                            num_samples=int(rng.integers(1, 500)))
               for i in range(count)]
    return global_params, updates


@pytest.fixture
def make_updates():
    return updates_for


@pytest.fixture
def round_inputs():
    return updates_for(seed=1, count=5, size=257)
