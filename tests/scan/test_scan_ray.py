"""engine="ray" on a local Ray (2 CPUs, started once per test session) gives the local result.

Not in the ``both`` session: Ray's workers import the model's framework, and
a worker that imported TensorFlow before torch can crash.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiviz as mv

pytestmark = [pytest.mark.torch, pytest.mark.ray]

LAYERS = ["relu2", "relu3", "fc"]


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_engine_gives_the_local_result(local_ray):
    model = mv.builtin_model("torch")
    data = mv.shapes_dataset(80, seed=2)
    local = mv.scan(model, data.images, LAYERS, topk=6, batch_size=16, progress=False)
    remote = mv.scan(model, data.images, LAYERS, topk=6, batch_size=16, engine="ray", concurrency=2)
    batches = [data.images[i : i + 16] for i in range(0, 80, 16)]
    from_list = mv.scan(model, batches, LAYERS, topk=6, engine="ray", concurrency=1)
    whole = mv.capture(model, data.images, LAYERS)
    for got in (remote, from_list):
        assert got.samples == 80 and got.batches == 5
        for layer in LAYERS:
            a, b = local.stats(layer), got.stats(layer)
            np.testing.assert_array_equal(a.count, b.count)
            np.testing.assert_array_equal(a.min, b.min)
            np.testing.assert_array_equal(a.max, b.max)
            np.testing.assert_allclose(a.mean, b.mean, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(a.std, b.std, rtol=1e-9, atol=1e-12)
            np.testing.assert_array_equal(a.positive_fraction, b.positive_fraction)
            for ch in range(len(a)):
                assert got.exemplars(layer, ch) == local.exemplars(layer, ch)
            # the sketches merged on the driver: the 0.995-quantile's true rank within their bound
            v = np.moveaxis(whole[layer], 1, 0).reshape(len(a), -1)
            q = b.quantile(0.995)
            lo, hi = b.sketch.rank_bounds(0.995, 3)
            below = (v < q[:, None]).mean(axis=1)
            upto = (v <= q[:, None]).mean(axis=1)
            assert np.all((upto >= lo - 1e-3) & (below <= hi + 1e-3))
        assert got.fields == local.fields
