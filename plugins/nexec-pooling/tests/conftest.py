import pytest

import nexec


@pytest.fixture(autouse=True)
def fresh_session():
    """Predictable auto-names and weights in every test."""
    nexec.clear_session()
    nexec.set_random_seed(1234)
    yield
    nexec.clear_session()
