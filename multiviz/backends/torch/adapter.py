"""The PyTorch adapter: forward hooks on the chosen modules, NumPy out.

Every verb leaves the model exactly as it found it, however it ends: hooks
removed, each module's ``training`` flag and each parameter's
``requires_grad`` flag restored, weights, buffers (BatchNorm running
statistics) and ``.grad`` untouched. Passes run in eval mode without autograd
(``capture``, ``forward``) or with a graph over the chosen layers only
(``gradients``). Input — NumPy or a tensor on any device — is copied onto the
model's device and floating dtype; what comes back is float32 NumPy.

Behaviour to know about:

* Early stop. The first ``capture`` of a (model, layers, input shape) runs the
  whole forward pass and counts each chosen module's calls; later ones stop
  once those calls have happened, so an early layer costs only the layers
  before it (see :mod:`multiviz.backends.torch.capture`).
* A model ending in ``nn.Softmax`` / ``nn.LogSoftmax`` is scored on the logits
  entering it by ``gradients``, and those logits are its ``output``.
* ``guided=True`` guides every ReLU and ReLU6 the forward pass runs,
  ``nn.ReLU`` modules and ``F.relu`` / ``torch.relu`` calls alike (a
  ``TorchFunctionMode`` for the duration of the call), as the Keras backend
  guides ``relu`` / ``relu6`` activations and ``ReLU`` layers; other
  activations keep their plain gradient.
* A module reached only through ``module.forward(x)`` (not ``module(x)``) runs
  no hooks and cannot be captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from multiviz.backends.contract import GradientResult, Target
from multiviz.backends.torch.attention import attention_io
from multiviz.backends.torch.capture import capture_outputs
from multiviz.backends.torch.gradients import compute_gradients
from multiviz.backends.torch.inputs import (
    entry_check,
    main_output,
    run_model,
    to_model_input,
    to_numpy,
)
from multiviz.backends.torch.layers import find_modules, layer_infos, unwrap
from multiviz.backends.torch.state import eval_mode
from multiviz.backends.torch.tokens import (
    LayoutTracker,
    keep_tracker,
    known_tracker,
    layer_layouts,
    model_token_grid,
)
from multiviz.core.names import split_suffix
from multiviz.core.records import LayerInfo
from multiviz.core.tokens import LAST, TokenGrid, canonical_layer_shape
from multiviz.errors import InputShapeError

__all__ = ["TorchBackend"]

_KERAS_ROOTS = ("keras", "tf_keras")


class TorchBackend:
    """The :class:`~multiviz.backends.contract.Backend` for ``torch.nn.Module`` models.

    Example:
        >>> from multiviz.backends import backend_by_name
        >>> backend = backend_by_name("torch")  # doctest: +SKIP
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())  # doctest: +SKIP
        >>> acts = backend.capture(net, np.zeros((2, 3, 8, 9), np.float32), ["0"])  # doctest: +SKIP
        >>> acts["0"].shape  # doctest: +SKIP
        (2, 4, 6, 7)
    """

    name = "torch"

    def owns(self, model: object) -> bool:
        """True for an ``nn.Module`` that is not a Keras 3 model (on the torch backend).

        Example:
            >>> TorchBackend().owns(torch.nn.ReLU()), TorchBackend().owns(object())
            (True, False)
        """
        mro = type(model).__mro__
        if any(c.__module__.split(".")[0] in _KERAS_ROOTS for c in mro):
            return False
        return isinstance(model, nn.Module)

    def layers(self, model: nn.Module, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
        """Every module except the root, in ``named_modules()`` order.

        Args:
            model: the module.
            input_shape: one sample's shape without the batch axis, e.g.
                ``(3, 224, 224)``: fills in each layer's output shape from one
                forward pass on zeros (batch 1).

        Returns:
            One :class:`LayerInfo` per module: name, class name, kind, own
            parameter count, and shape ``(None, C, H, W)`` when known.

        Raises:
            InputShapeError: ``input_shape`` does not fit the model.

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
            >>> TorchBackend().layers(net, input_shape=(3, 8, 9))[0]
            LayerInfo(name='0', type='Conv2d', kind='conv', shape=(None, 4, 6, 7), params=112)
        """
        model = unwrap(model)
        shapes = layouts = None
        if input_shape is not None:
            dims = tuple(int(d) for d in input_shape)
            x = to_model_input(np.zeros((1, *dims), np.float32), model)
            grid = model_token_grid(model, dims[-2:]) if len(dims) == 3 else None
            layouts, raw = layer_layouts(model, x, grid)
            shapes = {k: canonical_layer_shape(s, layouts[k], grid) for k, s in raw.items()}
        return layer_infos(model, shapes, layouts)

    def capture(self, model: nn.Module, x: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One inference pass; the chosen modules' outputs as float32 NumPy copies.

        Args:
            model: the module.
            x: ``(N, C, H, W)`` (or whatever the model takes) as NumPy or a tensor.
            names: module names as :meth:`layers` lists them.

        The first capture of a (model, names, input shape) runs the whole
        forward pass and counts each chosen module's calls; later ones stop
        right after the last of those calls, so an early layer is cheap.

        Returns:
            ``name`` -> array, ``name#k`` for the k-th extra call of a module,
            ``name[i]`` / ``name[key]`` for tuple / dict outputs; channels-first
            as PyTorch produces it.

        Raises:
            LayerNotFoundError: a name is not a module of ``model``.
            InputShapeError: ``x`` does not fit the model (the fix is named).

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU())
            >>> TorchBackend().capture(net, np.array([[-1.0, 2.0]]), ["0", "1"])
            {'0': array([[-1.,  2.]], dtype=float32), '1': array([[0., 2.]], dtype=float32)}
        """
        model = unwrap(model)
        chosen = find_modules(model, names)
        xt = to_model_input(x, model)
        tracker = self._tracker(model, xt)
        arrays = capture_outputs(model, xt, chosen, None if tracker.complete else tracker)
        return self._first(model, xt, tracker, arrays)

    def forward(self, model: nn.Module, x: Any) -> np.ndarray:
        """The model's output in inference mode, as float32 NumPy; the model unchanged.

        A tuple or dict output gives its ``"logits"`` entry or its first tensor.

        Example:
            >>> TorchBackend().forward(torch.nn.Softplus(), np.zeros((1, 2))).round(4)
            array([[0.6931, 0.6931]], dtype=float32)
        """
        model = unwrap(model)
        x = to_model_input(x, model)
        with eval_mode(model), torch.no_grad(), entry_check(model, x):
            out = run_model(model, x)
        return to_numpy(main_output(out))

    def gradients(
        self,
        model: nn.Module,
        x: Any,
        names: Sequence[str],
        target: Target = None,
        wrt_input: bool = False,
        guided: bool | str = False,
    ) -> GradientResult:
        """Activations of ``names`` and the gradient of the target score for each.

        Uses ``torch.autograd.grad`` (never ``.backward()``), so parameters'
        ``.grad`` stay as they were; parameters are frozen for the call and
        the graph starts at the first chosen layer unless ``wrt_input``.

        Args:
            model: the module.
            x: the input batch, NumPy or a tensor.
            names: layers whose activations and gradients to return.
            target: ``None`` (each sample's top class), an int or ``(N,)`` ints,
                or a callable mapping the output tensor to ``(N,)`` scores.
                The score is summed over samples, so per-sample gradients are
                independent. A final softmax is skipped: logits are scored.
            wrt_input: also return d(score)/d(input) (NCHW).
            guided: guided backpropagation through every ReLU (module or function);
                ``"deconvnet"``: the deconvnet's rule (positive gradients only).

        Returns:
            :class:`GradientResult`.

        Raises:
            TargetError: ``target`` does not fit (the fix is named).
            InputShapeError: ``x`` does not fit the model.

        Example:
            >>> net = torch.nn.Linear(2, 2, bias=False)
            >>> _ = net.weight.data.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
            >>> TorchBackend().gradients(net, np.ones((1, 2)), [], target=1, wrt_input=True).input_gradient
            array([[3., 4.]], dtype=float32)
        """
        model = unwrap(model)
        chosen = find_modules(model, names)
        xt = to_model_input(x, model)
        if wrt_input and not xt.is_floating_point():
            raise InputShapeError(
                f"wrt_input=True needs a floating input; this model takes {xt.dtype}. "
                "Take gradients with respect to a layer (e.g. the embedding) instead."
            )
        tracker = self._tracker(model, xt)
        tracking = None if tracker.complete else tracker
        result = compute_gradients(model, xt, chosen, target, wrt_input, guided, tracking)
        result.activations = self._first(model, xt, tracker, result.activations)
        result.gradients = self._first(model, xt, tracker, result.gradients)
        return result

    def token_grid(self, model: nn.Module, input_hw: Sequence[int]) -> TokenGrid | None:
        """The patch grid of a vision transformer at input size ``(H, W)``, or ``None``.

        Example:
            >>> TorchBackend().token_grid(torch.nn.Identity(), (8, 8)) is None
            True
        """
        return model_token_grid(unwrap(model), input_hw)

    def layouts(self, model: nn.Module, x: Any, grid: TokenGrid | None = None) -> dict[str, str]:
        """Output key -> layout (:mod:`multiviz.core.tokens`) for input ``x``'s shape (cached).

        Channels-last maps are already channels-first in what :meth:`capture`
        and :meth:`gradients` return; token layers are returned as
        ``(N, T, C)`` for the caller to fold.
        """
        model = unwrap(model)
        xt = to_model_input(np.asarray(x[:1]) if isinstance(x, np.ndarray) else x[:1], model)
        return layer_layouts(model, xt, grid)[0]

    def attention_io(self, model: nn.Module, x: Any, target: Any = "none") -> Any:
        """Each self-attention layer's weights, input tokens and output gradient (rollout).

        See :func:`multiviz.backends.torch.attention.attention_io`.
        """
        model = unwrap(model)
        return attention_io(model, to_model_input(x, model), target)

    def _tracker(self, model: nn.Module, x: torch.Tensor) -> LayoutTracker:
        """The finished layout tracker for ``x``'s shape, or a new one to ride the next pass."""
        known = known_tracker(model, x)
        if known is not None:
            return known
        tracker = LayoutTracker(model, x)
        tracker.complete = False
        return tracker

    def _first(
        self,
        model: nn.Module,
        x: torch.Tensor,
        tracker: LayoutTracker,
        arrays: dict[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Channels-last ``(N, H, W, C)`` maps (Swin, ConvNeXt's MLP) moved to channels first."""
        if tracker.model is not None:  # it rode this pass
            if tracker.complete:
                keep_tracker(model, x, tracker)
            else:
                tracker.finish()
        layouts = tracker.base
        out = {}
        for key, arr in arrays.items():
            layout = layouts.get(key) or layouts.get(split_suffix(key)[0])
            last = layout == LAST and arr.ndim == 4
            out[key] = np.ascontiguousarray(np.moveaxis(arr, -1, 1)) if last else arr
        return out

    def input_layout(self, model: nn.Module) -> str:
        """Always ``"channels_first"``: PyTorch models take ``(N, C, H, W)``.

        Example:
            >>> TorchBackend().input_layout(torch.nn.Identity())
            'channels_first'
        """
        return "channels_first"
