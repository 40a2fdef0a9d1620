"""Data-parallel fit on a local Ray: two workers, one global batch of 64 split 32 + 32.

    python examples/distributed_fit.py            # starts Ray locally with 2 CPUs
    RAY_ADDRESS=auto python examples/distributed_fit.py   # joins a running cluster
"""
import os
import tempfile

import numpy as np
import ray

import nexec
from nexec import Input, Model, callbacks, layers
from nexec.distribute import RayDataParallel

if os.environ.get("RAY_ADDRESS"):
    ray.init(address=os.environ["RAY_ADDRESS"])
else:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
nexec.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 16)).astype("float32")
y = np.eye(4, dtype="float32")[x[:, :4].argmax(1)]
inputs = Input(shape=(16,))
outputs = layers.Dense(4, activation="softmax")(layers.Dense(32, activation="relu")(inputs))
model = Model(inputs, outputs)
strategy = RayDataParallel(num_workers=2)
model.compile("adam", "categorical_crossentropy", ["accuracy"], distribute=strategy)
backup = os.path.join(tempfile.mkdtemp(), "backup")
model.fit(x, y, batch_size=64, epochs=3, verbose=2,
          callbacks=[callbacks.BackupAndRestore(backup)])
for w in strategy.worker_info:
    print(f"worker rank {w['rank']}: actor {w['actor_id'][:12]}..., node {w['node_id'][:12]}..., "
          f"pid {w['pid']}")
print("evaluate on the driver:", model.evaluate(x, y, verbose=0))
strategy.shutdown()
