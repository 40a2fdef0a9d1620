"""Every graph test starts a fresh session, so Keras-style auto-names are predictable."""
import pytest

import nexec


@pytest.fixture(autouse=True)
def fresh_session():
    nexec.clear_session()
    nexec.set_random_seed(1234)
    yield
    nexec.clear_session()
