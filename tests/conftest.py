"""Every test starts from a fresh session: predictable auto-names and seeded weights."""
import pytest

import nexec


@pytest.fixture(autouse=True)
def fresh_session():
    nexec.clear_session()
    nexec.set_random_seed(1234)
    yield
    nexec.clear_session()
