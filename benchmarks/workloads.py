"""The benchmark workloads, described once, framework-neutral.

This file MIRRORS ``shared/peers/workloads.py`` (the peers' copy, which PyTorch and Keras
scripts import) so that the asv suite runs from a clone without ``../shared``.
``tests/test_benchmarks_smoke.py`` and ``benchmarks/compare.py`` check that the two copies
agree whenever ``../shared/peers`` is present; change both together.

Everything below the line ``# --- nexec-only extras`` is not in the peers' file.
"""
SEED_MLP = dict(n=1000, features=64, hidden=(32, 32), classes=10, batch=128, epochs=10,
                optimizer="rmsprop", lr=1e-3)
WIDE_MLP = dict(n=8192, features=784, hidden=(512, 512), classes=10, batch=128, epochs=3,
                optimizer="adam", lr=1e-3)
# Conv2D(32,3,same,relu) -> inception [1x1(32) | 1x1(24)->3x3(32) | 1x1(8)->5x5(16)] (80 ch)
# -> Conv2D(64,3,s2,same,relu) -> residual (3x3(64) relu -> 3x3(64); add; relu)
# -> Conv2D(64,3,s2,same,relu) -> Flatten -> Dense(10, softmax)
CNN = dict(n=2048, image=(32, 32, 3), classes=10, batch=64, epochs=2,
           optimizer="sgd", lr=1e-2, momentum=0.9)


def make_data(spec, shape, seed=0):
    """float32 inputs uniform in [0, 1). Targets: uniform random rows for the seed MLP, as in
    the classic example; one-hot labels for the others (random soft targets make
    crossentropy diverge with clipping, which benchmarks nothing)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.random((spec["n"], *shape), dtype=np.float32)
    if spec is SEED_MLP:
        y = rng.random((spec["n"], spec["classes"]), dtype=np.float32)
    else:
        y = np.eye(spec["classes"], dtype=np.float32)[rng.integers(0, spec["classes"], spec["n"])]
    return x, y


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- nexec-only extras (no peer implementation; used by the asv suite only) ---------------
# 20 residual blocks of (Dense(256, relu) -> Dense(256); Add; Activation relu) on 256
# features, then Dense(10, softmax). Deep and narrow: per-layer overhead dominates.
RESIDUAL = dict(n=4096, features=256, width=256, blocks=20, classes=10, batch=128, epochs=2,
                optimizer="adam", lr=1e-3)

# ResNet-18-style network on 64x64x3 images (issue 20). Not in the peers' file: its PyTorch,
# Keras and ONNX Runtime sides are ``benchmarks/peers_resnet.py``, which reads this spec.
# Stem Conv2D(64, 7, s2, same) -> BN -> relu -> MaxPooling2D(3, s2, same) (64 -> 32 -> 16),
# then BasicBlocks [2, 2, 2, 2] at widths 64-128-256-512 (3x3 convs without bias, each
# followed by BN; the first block of stages 2-4 has stride 2 and a 1x1 s2 conv + BN
# projection shortcut; Add; relu), GlobalAveragePooling2D (2x2 -> 1), Dense(10, softmax).
# "same" padding in the Keras/TF convention (extra row/column at the bottom/right).
RESNET18 = dict(n=128, image=(64, 64, 3), classes=10, batch=32, epochs=3,
                optimizer="sgd", lr=1e-2, momentum=0.9, widths=(64, 128, 256, 512),
                blocks=(2, 2, 2, 2), stem=(7, 2), bn_momentum=0.99, bn_epsilon=1e-3)
