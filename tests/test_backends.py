"""Every model builds and runs under the JAX backend, with the numbers TensorFlow gives."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import zoo
from .configs import SMALL, small

pytest.importorskip("jax", reason="jax[cpu] is in the dev extra; install it to run this test")

JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import zoo
    assert keras.backend.backend() == "jax", keras.backend.backend()
    folder, small = sys.argv[1], json.loads(sys.argv[2])
    for name in zoo.list_models():
        model = zoo.build(name, **small.get(name, {}))
        model.load_weights(f"{folder}/{name}.weights.h5")
        x = np.load(f"{folder}/{name}.input.npy")
        y = model(x)
        y = y["y"] if isinstance(y, dict) else y
        np.save(f"{folder}/{name}.jax.npy", np.asarray(y))
    print("ok")
""")


@pytest.mark.slow
def test_every_model_runs_under_jax_with_tensorflow_numbers(tmp_path, rng):
    expected = {}
    for name in zoo.list_models():
        model = zoo.build(name, **small(name))
        model.set_weights([w + rng.normal(0, 0.02, w.shape).astype(w.dtype) for w in model.get_weights()])
        x = rng.random((1, 13, 11, model.inputs[0].shape[-1]), dtype="float32")
        y = model(x)
        expected[name] = np.asarray(y["y"] if isinstance(y, dict) else y)
        model.save_weights(tmp_path / f"{name}.weights.h5")
        np.save(tmp_path / f"{name}.input.npy", x)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path), json.dumps(SMALL)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, y in expected.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.jax.npy"), y, rtol=1e-3, atol=1e-4,
                                   err_msg=name)
