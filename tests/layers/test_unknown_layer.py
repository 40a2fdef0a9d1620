"""Asking nexec.layers for a layer it does not have names the closest ones it has."""
from __future__ import annotations

import pytest

from nexec import layers


def test_missing_layer_names_the_nearest_ones():
    with pytest.raises(AttributeError, match=r"no layer 'Conv3D'; nexec has Conv2D.*"
                                             r"docs/keras.md lists what is supported"):
        layers.Conv3D  # noqa: B018


def test_wrong_case_finds_the_layer():
    with pytest.raises(AttributeError, match="nexec has .*LeakyReLU"):
        layers.leakyrelu  # noqa: B018


def test_nothing_close_still_lists_some_layers():
    with pytest.raises(AttributeError, match=r"no layer 'Qqqq'; nexec has \d+ layers, e.g. "):
        layers.Qqqq  # noqa: B018


def test_private_names_are_plain_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute '_secret'"):
        layers._secret  # noqa: B018
    assert not hasattr(layers, "__wrapped__")
