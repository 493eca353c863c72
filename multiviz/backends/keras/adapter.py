"""The Keras 3 backend: capture, forward and gradients on Keras models.

What works where:

* **Functional and Sequential models** (the usual case, and every
  ``keras.applications`` model): a capture is one multi-output sub-model over
  the model's own symbolic outputs, built once per (model, set of layers),
  cached weakly and run through one cached ``tf.function``. It computes only
  what the deepest chosen layer needs. Layers inside nested models
  (``"encoder/conv1"``), layers called several times (``"relu#1"``) and layers
  with several outputs (``"split[0]"``) are all addressable.
* **A Sequential that was never built**: it is built from ``x``'s shape (batch
  axis left free) — what Keras itself does on the model's first call. Until
  then :meth:`KerasBackend.layers` lists its top-level layers without shapes.
* **Subclassed models** (no symbolic graph): the chosen layers' ``call`` is
  wrapped on the instance for one eager ``model(x, training=False)`` and
  unwrapped afterwards. Names are layer-name paths (``"block/conv"``) from the
  layer tree; a layer called twice gives ``"name#1"`` in call order. Output
  shapes are unknown until a pass runs (``layers(model, input_shape=...)``
  runs one on zeros).
* **Backends**: everything runs on each Keras backend — TensorFlow, JAX and
  torch, one per process (``KERAS_BACKEND``), each tested in its own session.
  Only TensorFlow's capture gets a ``tf.function``; gradients are taken per
  backend (:mod:`.gradients`: a tape on TensorFlow, one jitted pure function
  on JAX, autograd on torch).
* **Threads and interrupts**: every verb holds the model's lock
  (:mod:`multiviz.backends.guard`); a layer patched for a call (a subclassed
  model's recorded ``call``, guided ReLUs) serves only the calling thread and
  is put back however the call ends, Ctrl-C included.
* **Gradients** are scored on logits (a final softmax is undone, see
  :mod:`.gradients_tf`). When every chosen layer is a top-level layer of a
  Functional / Sequential model, one cached sub-model over the chosen outputs
  and the logits runs under the tape (:mod:`.gradients_tf_fast`); layers inside
  nested models and subclassed models take the general node-by-node pass.
  For class-index targets either is one cached ``tf.function`` per (model,
  layers, ``wrt_input``, guided), traced on the first call. The input's
  gradient is only computed when asked for.

Every array comes back as a float32 NumPy copy in the canonical layout
(channels first); each layer's channel order is read from the layer (see
:mod:`.layers`), never guessed from the shape. The model is never
modified: no layer is called symbolically (no inbound node is added), and
anything patched for a call is restored on the way out.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from multiviz.backends.cache import cached
from multiviz.backends.contract import GradientResult, Inputs, Target, main_output, read_inputs
from multiviz.backends.guard import locked
from multiviz.backends.keras.attention import attention_layers, read_attention
from multiviz.backends.keras.capture import EagerPlan, output_index_of, runner_for, tf_function
from multiviz.backends.keras.gradients import compute_gradients
from multiviz.backends.keras.inputs import (
    check_shape,
    host_view,
    input_errors,
    plain,
    to_tensor,
)
from multiviz.backends.keras.layers import (
    LAST,
    STATE,
    Site,
    bounds_of,
    canonical_shape,
    geometry_of,
    graph_of,
    list_sites,
    output_layout,
    own_params,
    read_time_layout,
)
from multiviz.backends.keras.tokens import model_token_grid
from multiviz.backends.memory import Releaser
from multiviz.core.attention import AttentionIO
from multiviz.core.names import owner, suffix_order
from multiviz.core.records import LayerInfo
from multiviz.core.tokens import PATCHES, TOKENS, TOKENS_CF, TokenGrid, canonical_layer_shape
from multiviz.core.transpose import channels_first_copy
from multiviz.errors import (
    InputShapeError,
    LayerNotFoundError,
    MultivizError,
    UnsupportedAttentionError,
    layer_hint,
)

__all__ = ["KerasBackend"]


def _tokens_first(arr: np.ndarray, layout: str | None) -> np.ndarray:
    """``(N, T, C)`` tokens from what capture returned (``(N, C, T)`` if it transposed them)."""
    arr = np.asarray(arr, np.float64)
    return np.swapaxes(arr, 1, 2) if layout in (LAST, TOKENS_CF) and arr.ndim == 3 else arr


def _residual_source(model: Any, source: str) -> str | None:
    """The layer feeding ``source`` when ``source`` is a LayerNormalization (pre-norm blocks)."""
    try:
        layer = model.get_layer(source)
    except ValueError:
        return None
    if not isinstance(layer, keras.layers.LayerNormalization):
        return None
    return layer._inbound_nodes[0].input_tensors[0]._keras_history[0].name


_SITES: weakref.WeakKeyDictionary[Any, tuple[Any, list[Site]]] = weakref.WeakKeyDictionary()


class KerasBackend:
    """Adapter for Keras 3 models (``keras.Model`` / ``keras.layers.Layer``).

    Example:
        >>> import keras                                   # doctest: +SKIP
        >>> from multiviz.backends import get_backend      # doctest: +SKIP
        >>> inp = keras.Input((32, 40, 3))                 # doctest: +SKIP
        >>> model = keras.Model(inp, keras.layers.Conv2D(8, 3, name="conv")(inp))  # doctest: +SKIP
        >>> acts = get_backend(model).capture(model, np.zeros((2, 32, 40, 3)), ["conv"])  # doctest: +SKIP
        >>> acts["conv"].shape                             # doctest: +SKIP
        (2, 8, 30, 38)
    """

    name = "keras"

    # ------------------------------------------------------------------ verbs

    def owns(self, model: object) -> bool:
        """True for Keras 3 layers and models (decided from the type's classes)."""
        if not any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__):
            return False
        return isinstance(model, keras.layers.Layer)

    @locked
    def layers(self, model: Any, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
        """Every addressable layer, in model order, InputLayers excluded.

        Args:
            model: a Keras 3 model.
            input_shape: one sample's shape without batch axis (model layout).
                Builds a Sequential that was never built; for a subclassed
                model, runs one pass on zeros to learn output shapes and the
                ``#k`` names of layers called several times.

        Returns:
            One :class:`~multiviz.LayerInfo` per output of each layer call, its
            shape in the canonical layout (batch ``None``) where known.
        """
        several = bool(input_shape) and all(isinstance(d, (tuple, list)) for d in input_shape)
        if input_shape is not None and not several:
            self._build_if_needed(model, (None, *input_shape))
        sites = self._sites(model)
        if input_shape is not None and graph_of(model) is None:
            return self._run_for_shapes(model, sites, input_shape)
        return [self._info(s, self._shape(s.shape, s.layout, model)) for s in sites]

    def input_count(self, model: Any) -> int | None:
        """How many inputs the model's graph takes; ``None`` for a subclassed model."""
        graph = graph_of(model)
        return len(graph.inputs) if graph is not None else None

    @locked
    def capture(self, model: Any, x: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One forward pass; every call and output of the layers ``names``, canonical layout.

        A layer name (a :attr:`~multiviz.LayerInfo.base`) gives each of its
        calls and outputs: ``"relu"`` -> ``"relu"``, ``"relu#1"``; ``"split"``
        -> ``"split[0]"``, ``"split[1]"`` (:mod:`multiviz.core.names` keeps
        the ones a caller asked for).

        Raises:
            LayerNotFoundError: a name is not a layer of the model.
            InputShapeError: ``x`` does not fit the model's input.
        """
        inputs = self._inputs(model, x)
        sites = self._select(model, names)
        if not sites:
            return {}
        runner = runner_for(model, sites)
        with input_errors(model, inputs if len(inputs) > 1 else inputs[0]):
            tensors = runner(model, inputs)
        del inputs  # the input tensor too is freed before the copies
        # each framework tensor is dropped as soon as it is copied, and a
        # large capture hands the freed memory back as it goes
        # (multiviz.backends.memory), so the peak is the data plus a stretch
        # of layers, not the data twice
        release = Releaser(sum(4 * math.prod(t.shape) for t in tensors.values()))
        out: dict[str, np.ndarray] = {}
        for k in self._ordered(model, tensors):
            out[k] = _numpy(tensors.pop(k), runner.host_layout(k))
            release.freed(out[k].nbytes)
        return out

    @locked
    def forward(self, model: Any, x: Any) -> np.ndarray:
        """The model's main output for ``x``, float32 NumPy, ``training=False``.

        The main output of a model returning several is the contract's
        (:func:`~multiviz.backends.contract.main_output`): a dict's
        ``"logits"`` entry, else its first; a list's first.
        """
        inputs = self._inputs(model, x)
        fn = self._forward_fn(model)
        with input_errors(model, inputs if len(inputs) > 1 else inputs[0]):
            out = fn(inputs[0] if len(inputs) == 1 else list(inputs))
        return _numpy(main_output(out, keras.ops.is_tensor))

    @locked
    def gradients(
        self,
        model: Any,
        x: Any,
        names: Sequence[str],
        target: Target = None,
        wrt_input: bool = False,
        guided: bool | str = False,
    ) -> GradientResult:
        """Activations of ``names`` and gradients of the summed target score.

        The score is read from the logits: an output that ends in a softmax
        or a sigmoid is scored on that activation's input (see
        :mod:`.gradients`). ``target``: ``None`` (each sample's top class),
        an int, an int array of shape (N,) (classes of the main output), or a
        callable given the model's whole output (tensor, list or dict,
        logits swapped in) returning (N,) scores.

        Raises:
            TargetError: ``target`` does not fit the batch or the output (the
                contract's check, as for PyTorch).
            MultivizError: Keras runs on a backend multiviz has no gradients
                for, or (JAX) a layer of a model without a graph is asked for
                (see :mod:`.gradients`).
        """
        inputs = self._inputs(model, x)
        sites = self._select(model, names)
        given = inputs if len(inputs) > 1 else inputs[0]
        with input_errors(model, given):
            (logits, idx, scores, recorded, grads, input_grad), head = compute_gradients(
                model, given, sites, target, wrt_input, guided
            )
        layouts = self._layouts(model)
        wanted = self._ordered(model, recorded)
        return GradientResult(
            output=_numpy(logits),
            targets=None if idx is None else np.asarray(idx, np.int64),
            scores=_numpy(scores),
            activations=_frames_joined(recorded, wanted, layouts, sites),
            gradients=_frames_joined(grads, wanted, layouts, sites),
            input_gradient=self._per_input(model, x, input_grad) if wrt_input else None,
            head=head,
        )

    def input_layout(self, model: Any) -> str:
        """``"channels_last"`` / ``"channels_first"``: the first conv layer's format.

        Falls back to ``keras.config.image_data_format()`` without conv layers.
        """
        for site in self._sites(model):
            if site.kind == "conv" and getattr(site.layer, "data_format", None):
                return str(site.layer.data_format)
        return keras.config.image_data_format()

    # ------------------------------------------------------------------ helpers

    def _sites(self, model: Any) -> list[Site]:
        graph = graph_of(model)
        if graph is None:  # subclassed / unbuilt: the layer tree may still change
            return list_sites(model)
        cached = _SITES.get(model)
        if cached is not None and cached[0]() is graph:
            return cached[1]
        sites = list_sites(model)
        _SITES[model] = (weakref.ref(graph), sites)
        return sites

    def _info(self, site: Site, shape: tuple[int | None, ...] | None) -> LayerInfo:
        return self._info_for(site.key, site, shape)

    def _info_for(
        self,
        key: str,
        site: Site,
        shape: tuple[int | None, ...] | None,
        layout: str | None = None,
    ) -> LayerInfo:
        return LayerInfo(
            key,
            site.type,
            site.kind,
            shape,
            own_params(site.layer),
            site.base,
            **geometry_of(site.layer),
            bounds=bounds_of(site.layer),
            layout=layout or site.layout,
        )

    def _shape(
        self, shape: tuple[int | None, ...] | None, layout: str, model: Any
    ) -> tuple[int | None, ...] | None:
        if layout in (TOKENS, PATCHES):
            return canonical_layer_shape(shape, layout, model_token_grid(model))
        return canonical_shape(shape, layout)

    # ------------------------------------------------------------------ transformers

    def token_grid(self, model: Any, input_hw: Sequence[int]) -> TokenGrid | None:
        """The patch grid a layer of ``model`` declares (``grid``, ``num_prefix_tokens``), or None."""
        return model_token_grid(model)

    def layouts(self, model: Any, x: Any = None, grid: TokenGrid | None = None) -> dict[str, str]:
        """Output key -> layout (:mod:`multiviz.core.tokens`), static.

        Token layers of a model that declares its grid come back ``(N, T, C)``;
        with a ``grid`` the model does not declare, rank-3 outputs with its
        token count come back transposed, ``(N, C, T)`` (:data:`TOKENS_CF`).
        """
        own = model_token_grid(model)
        out = {}
        for site in self._sites(model):
            layout = site.layout
            shape = site.shape
            if (
                own is None
                and grid is not None
                and layout == LAST
                and shape is not None
                and len(shape) == 3
                and shape[1] in (grid.tokens, grid.patches)
            ):
                layout = TOKENS_CF
            out[site.key] = layout
        return out

    def attention_io(self, model: Any, x: Any, target: Any = "none") -> AttentionIO:
        """Each MultiHeadAttention's weights, query tokens and output gradient (rollout)."""
        found = attention_layers(model)
        if not found:
            raise UnsupportedAttentionError(
                f"Model {model.name!r} has no keras.layers.MultiHeadAttention; attention rollout "
                "needs a vision transformer."
            )
        weights = [read_attention(layer) for _, layer, _ in found]
        sources = [src for _, _, src in found]
        residual = _residual_source(model, sources[-1])
        names = list(dict.fromkeys([*sources, *([residual] if residual else [])]))
        layouts = self.layouts(model)
        if isinstance(target, str) and target == "none":
            acts = self.capture(model, x, names)
            grads = targets = None
        else:
            result = self.gradients(model, x, [*names, *(n for n, _, _ in found)], target)
            acts = result.activations
            grads = [_tokens_first(result.gradients[n], layouts.get(n)) for n, _, _ in found]
            targets = result.targets
        inputs = [_tokens_first(acts[src], layouts.get(src)) for src in sources]
        res = _tokens_first(acts[residual], layouts.get(residual)) if residual else None
        return AttentionIO(
            [n for n, _, _ in found],
            weights,
            inputs,
            grads,
            targets,
            res if res is not None and res.shape == inputs[-1].shape else None,
        )

    def _select(self, model: Any, names: Sequence[str]) -> list[Site]:
        """Every site (call and output) of each named layer."""
        names = [names] if isinstance(names, str) else list(names)
        by_base: dict[str, list[Site]] = {}
        for s in self._sites(model):
            by_base.setdefault(s.base, []).append(s)
        chosen: dict[str, Site] = {}
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"Layer names must be strings. Received: {name!r}.")
            if name not in by_base:
                raise LayerNotFoundError(
                    f"No layer named {name!r} in model {model.name!r}." + layer_hint(name, by_base)
                )
            chosen.update((s.key, s) for s in by_base[name])
        return list(chosen.values())

    def _ordered(self, model: Any, keys: Any) -> list[str]:
        """``keys`` in model order: by layer, then call, then output."""
        sites = self._sites(model)
        order = {s.key: i for i, s in enumerate(sites)}
        first = {}
        for i, s in enumerate(sites):
            first.setdefault(s.base, i)

        def rank(key: str) -> tuple[int, tuple[int, tuple[str, ...]]]:
            if key in order:
                return order[key], suffix_order("")
            read = owner(key, first)  # "relu#1" of a layer found at run time
            if read is None:
                return len(order), suffix_order("")
            return first[read[0]], suffix_order(read[1])

        return sorted(keys, key=rank)

    def unreachable(self, model: Any, names: Any) -> str | None:
        """Why a name below a wrapper cannot be captured, and what to capture instead.

        A layer inside ``TimeDistributed`` is reached by recording its calls,
        one per time step; with an unknown number of time steps Keras
        vectorizes the call and nothing can be recorded.
        """
        wanted = [names] if isinstance(names, str) else list(names or [])
        graph = graph_of(model)
        if graph is None:
            return None
        for name in wanted:
            if not isinstance(name, str) or "/" not in name:
                continue
            head = name.split("/", 1)[0]
            layer = next((la for la in graph.layers if la.name == head), None)
            if isinstance(layer, keras.layers.TimeDistributed):
                return (
                    f"`names`: {name!r} is inside TimeDistributed {head!r}, whose number of time "
                    "steps is unknown (None): Keras then vectorizes the call.\nhint: build the "
                    f"model with a fixed number of time steps, or capture {head!r}"
                )
        return None

    def _layouts(self, model: Any) -> Any:
        by_key = {s.key: s.layout for s in self._sites(model)}
        by_base = {s.base: s.layout for s in self._sites(model)}
        layers = {s.base: s.layer for s in self._sites(model)}
        default = keras.config.image_data_format()

        def layout(key: str) -> str:
            if key in by_key:
                return by_key[key]
            read = owner(key, by_base)
            if read is None:
                return default
            return output_layout(layers[read[0]], output_index_of(read[1]), by_base[read[0]])

        return layout

    def _run_for_shapes(
        self, model: Any, sites: list[Site], input_shape: Sequence[int]
    ) -> list[LayerInfo]:
        # one eager pass on zeros; a layer that never runs keeps shape None
        plan = EagerPlan([(s.layer, s.base) for s in sites])
        if input_shape and all(isinstance(d, (tuple, list)) for d in input_shape):
            zeros: Any = [to_tensor(np.zeros((1, *s)), "float32") for s in input_shape]
        else:
            zeros = to_tensor(np.zeros((1, *input_shape)), "float32")
        with input_errors(model, zeros):
            tensors = plan(model, (zeros,), {})
        layout = self._layouts(model)
        bases = {s.base for s in sites}
        ordered = self._ordered(model, tensors)
        infos = []
        for site in sites:
            mine = [k for k in ordered if (owner(k, bases) or ("",))[0] == site.base]
            if not mine:
                infos.append(self._info(site, None))
            for key in mine:
                shape = self._shape(tuple(tensors[key].shape), layout(key), model)
                infos.append(self._info_for(key, site, shape, layout(key)))
        return infos

    def _build_if_needed(self, model: Any, batch_shape: tuple[int | None, ...]) -> None:
        # An unbuilt Sequential is built from the input shape, batch axis left
        # free — what Keras does itself on the model's first call.
        if not isinstance(model, keras.Sequential) or model._functional is not None:
            return
        try:
            model.build(batch_shape)
        except Exception as err:
            raise InputShapeError(
                f"Could not build Sequential model {model.name!r} for input shape "
                f"{batch_shape}: {err}. Call model.build(input_shape) or run the model once."
            ) from err
        if model._functional is None:
            raise MultivizError(
                f"Sequential model {model.name!r} could not be built for input shape "
                f"{batch_shape}. Call model.build(input_shape) or run the model once."
            )

    def _given_inputs(self, model: Any, x: Any) -> tuple[Inputs, list[Any], list[str]]:
        """The caller's input, its parts in the graph's input order, and their labels."""
        graph = graph_of(model)
        expected = list(graph.inputs) if graph is not None else []
        inputs = read_inputs(x, len(expected) if graph is not None else None)
        parts, labels = list(inputs.parts), inputs.labels
        if inputs.kind == "dict" and expected:
            names = [t.name for t in expected]
            if sorted(names) != sorted(inputs.names):
                raise InputShapeError(
                    f"Model {model.name!r} takes inputs named {names}; received a dict with "
                    f"keys {list(inputs.names)}.\nhint: pass a dict with exactly those keys"
                )
            at = {n: i for i, n in enumerate(inputs.names)}
            parts = [inputs.parts[at[n]] for n in names]
            labels = [labels[at[n]] for n in names]
        return inputs, parts, labels

    def _inputs(self, model: Any, x: Any) -> list[Any]:
        if isinstance(model, keras.Sequential) and model._functional is None:
            first = read_inputs(x, 1).parts[0]
            self._build_if_needed(model, (None, *tuple(np.shape(plain(first)))[1:]))
        graph = graph_of(model)
        expected = list(graph.inputs) if graph is not None else []
        _, parts, labels = self._given_inputs(model, x)
        if expected and len(parts) != len(expected):
            names = [t.name for t in expected]
            raise InputShapeError(
                f"Model {model.name!r} takes {len(expected)} inputs {names}; received "
                f"{len(parts)}.\nhint: pass a list with one array per input in that order, "
                "or a dict keyed by those names"
            )
        out = []
        for i, value in enumerate(parts):
            ref = expected[i] if expected else None
            dtype = ref.dtype if ref is not None else "float32"
            value = to_tensor(value, dtype)
            if ref is not None:
                label = labels[i] if len(parts) > 1 else "input"
                check_shape(
                    model, tuple(value.shape), tuple(ref.shape), self.input_layout(model), label
                )
            out.append(value)
        return out

    def _per_input(self, model: Any, x: Any, grads: Any) -> Any:
        """Input gradients (graph order) as NumPy, in the structure the caller gave."""
        inputs, _, _ = self._given_inputs(model, x)
        flat = list(grads) if isinstance(grads, (list, tuple)) else [grads]
        arrays = [_numpy(g) for g in flat]
        if inputs.kind == "dict" and graph_of(model) is not None:
            by_name = {t.name: a for t, a in zip(graph_of(model).inputs, arrays, strict=True)}
            arrays = [by_name[n] for n in inputs.names]
        return inputs.pack(arrays) if len(arrays) == len(inputs.parts) else arrays[0]

    def _forward_fn(self, model: Any) -> Any:
        graph = graph_of(model)
        if graph is None or keras.backend.backend() != "tensorflow":
            return lambda inputs: model(inputs, training=False)

        def build() -> tuple[Any, Any]:
            ref = weakref.ref(model)  # the cache must not keep the model alive

            def run(inputs: Any) -> Any:
                return ref()(inputs, training=False)

            return weakref.ref(graph), tf_function(run)

        # a since-rebuilt Sequential has a new graph: build again
        return cached(model, ("forward",), build, fresh=lambda e: e[0]() is graph)[1]


# ---------------------------------------------------------------------- outputs


def _frames_joined(
    tensors: dict[str, Any], wanted: Sequence[str], layouts: Any, sites: Sequence[Site]
) -> dict[str, np.ndarray]:
    """``key -> array`` in the canonical layout; a layer run per frame as ``(N, T, C, H, W)``.

    Inside ``TimeDistributed`` a layer is called once per time step, and a
    gradient pass records each call (``td/fconv``, ``td/fconv#1``...) so that
    each call's gradient is its own: here the calls become the time axis.
    """
    inner = {}
    for site in sites:
        timed = read_time_layout(site.layout)
        if timed is not None:
            inner[site.base] = timed[1]
    out: dict[str, np.ndarray] = {}
    frames: dict[str, list[tuple[int, np.ndarray]]] = {}
    for key in wanted:
        base, _, call = key.partition("#")
        if base in inner and (call == "" or call.isdigit()):
            frames.setdefault(base, []).append((int(call or 0), _numpy(tensors[key], inner[base])))
        else:
            out[key] = _numpy(tensors[key], layouts(key))
    for base, calls in frames.items():
        out[base] = np.stack([a for _, a in sorted(calls, key=lambda c: c[0])], axis=1)
    return out


def _numpy(tensor: Any, layout: str | None = None) -> np.ndarray:
    """A float32 C-contiguous copy; channels-last ranks 3-5 moved to channels-first.

    A recurrent layer's state ``(N, H)`` becomes ``(N, 1, H)``.
    """
    arr = host_view(tensor)
    if layout == LAST and 3 <= arr.ndim <= 5:
        return channels_first_copy(arr)
    if layout == STATE and arr.ndim == 2:
        arr = arr[:, None]
    return np.array(arr, dtype=np.float32, order="C", copy=True)
