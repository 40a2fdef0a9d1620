"""Keras model files: Keras 3 configs, ``.keras`` archives and legacy ``.h5`` files.

``layer_config`` maps one layer's Keras config to nexec's constructor arguments and back;
``model_config`` does the same for whole functional and Sequential models; ``weights`` knows
where Keras keeps each layer's weights; ``archive`` and ``legacy_h5`` read and write the two
file kinds. All of it sits below ``nexec.model``, which it knows only by duck typing.
"""
