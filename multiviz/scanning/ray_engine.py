"""The Ray Data engine of :func:`multiviz.scan`: the same reducers, on a Ray cluster.

The work is a Ray ``Dataset`` of batch numbers, mapped by an actor pool
(``map_batches`` with a callable class): each actor deserializes the model
once, then for each batch it captures the layers, folds them into fresh
reducers and emits the partial state as one row (the scan's ``.npz`` bytes).
The driver merges rows as they stream in, in any order — the reducers'
``merge`` makes the result that of one pass — so no stage holds more than a
few batches' states. (``Dataset.aggregate`` would need every input
materialized first.)

Where the inputs come from:

* an array: put in Ray's object store once; each actor slices its batches;
* a folder: each actor reads and preprocesses its batches' files;
* any other iterable: the driver reads it once and puts each batch in the
  object store (spilled to disk by Ray when large).

Ray is an optional extra (``pip install 'multiviz[ray]'``) imported only
here. Connect to a cluster with ``ray.init(address=...)`` (or set
``RAY_ADDRESS``) before calling :func:`multiviz.scan`; without a running
Ray, a local one is started.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from multiviz.scanning.data import Source
from multiviz.scanning.record import Scan

__all__ = ["run_ray"]


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        from multiviz.errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"engine='ray' needs Ray Data ({err}). Install it with: pip install 'multiviz[ray]'"
        ) from err
    return ray


def state_bytes(scan: Scan) -> bytes:
    """A scan's state as ``.npz`` bytes (plain arrays only)."""
    buf = io.BytesIO()
    np.savez(buf, **scan.to_state())
    return buf.getvalue()


def scan_from_bytes(blob: bytes) -> Scan:
    """The inverse of :func:`state_bytes` (``allow_pickle=False``)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as f:
        return Scan.from_state({k: f[k] for k in f.files})


class _ScanActor:
    """One actor of the pool: holds the model, turns batch numbers into partial states."""

    def __init__(
        self,
        plan: Any,
        model_ref: Any,
        inputs: Any,
        kind: str,
        batch_size: int,
        starts: list[int] | None,
    ) -> None:
        import ray

        from multiviz.backends import get_backend

        plan.model = ray.get(model_ref)  # once per actor
        plan.backend = get_backend(plan.model)
        self.plan = plan
        self.inputs = inputs
        self.kind = kind
        self.batch_size = batch_size
        self.starts = starts

    def _batch(self, b: int) -> tuple[Any, np.ndarray]:
        import ray

        if self.kind == "iterable":
            x = ray.get(self.inputs[b])
            start = self.starts[b]  # type: ignore[index]
            return x, np.arange(start, start + len(x))
        data = ray.get(self.inputs) if self.kind == "array" else self.inputs
        n = len(data)
        idx = np.arange(b * self.batch_size, min((b + 1) * self.batch_size, n))
        x = data[idx[0] : idx[-1] + 1] if self.kind == "array" else data[idx]
        return x, idx

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        blobs = []
        for b in np.asarray(rows["id"]).tolist():
            x, idx = self._batch(int(b))
            acts = self.plan.capture(x)
            part = self.plan.new_scan(acts)
            self.plan.fold(part, acts, idx + self.plan.index_offset)
            part.batches = 1
            blobs.append(state_bytes(part))
        return {"state": np.array(blobs, dtype=object)}


def run_ray(
    plan: Any,
    src: Source,
    *,
    resumed: Scan | None = None,
    concurrency: int | tuple[int, int] | None = None,
    num_gpus: float | None = None,
) -> Scan:
    """Scan ``src`` with Ray Data; returns the merged :class:`Scan`."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    from multiviz.scanning.crops import _numpy

    # the inputs, where the actors can reach them
    starts: list[int] | None = None
    if src.kind == "array":
        inputs: Any = ray.put(_numpy(src.data))
        n_batches = -(-(src.length or 0) // src.batch_size)
        first = next(src.batches(), None)
    elif src.kind == "folder":
        inputs = src.data
        n_batches = -(-(src.length or 0) // src.batch_size)
        first = next(src.batches(), None)
    else:
        refs, starts, first = [], [], None
        for batch in src.batches():
            if first is None:
                first = batch
            refs.append(ray.put(_numpy(batch.x)))
            starts.append(int(batch.indices[0]) if len(batch) else 0)
        inputs, n_batches = refs, len(refs)
    if first is None:
        raise ValueError(f"`data` ({src.layout_hint()}) held no inputs: nothing to scan.")

    # the driver names the layers and measures the fields on the first batch
    acts = plan.capture(first.x)
    result = resumed if resumed is not None else plan.new_scan(acts)
    if not result.fields:
        plan.fields_for(result, acts, first.x)
    skip = result.batches

    model = plan.model
    worker_plan = plan.__class__(**{**plan.__dict__, "model": None, "backend": None})
    pool = (
        concurrency
        if concurrency is not None
        else max(1, int(ray.available_resources().get("CPU", 1)))
    )
    # the batch numbers as in-memory blocks: no read task competes with the actors for CPUs
    work = ray.data.from_items([{"id": b} for b in range(skip, n_batches)])
    states = work.map_batches(
        _ScanActor,
        batch_size=1,
        batch_format="numpy",
        concurrency=pool,
        num_gpus=num_gpus,
        fn_constructor_kwargs={
            "plan": worker_plan,
            "model_ref": ray.put(model),
            "inputs": inputs,
            "kind": src.kind,
            "batch_size": src.batch_size,
            "starts": starts,
        },
    )
    for row in states.iter_rows():
        result.merge(scan_from_bytes(row["state"]))
    return result
