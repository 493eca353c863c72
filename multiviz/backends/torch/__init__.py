"""The PyTorch backend: forward hooks on the chosen modules, autograd for gradients.

The same file names as :mod:`multiviz.backends.keras`, one concern each:
``adapter`` (the :class:`~multiviz.backends.contract.Backend`), ``layers``
(names, kinds, parameter counts), ``inputs`` (getting an input in, shape
errors), ``capture`` (hooks, early stop), ``gradients``, ``state`` (modes,
flags and guided ReLUs, always restored), ``weights`` (read / write
parameters), ``load`` (model files and torchvision), ``builtin`` (the built-in
CNN). Reach them through :func:`multiviz.backends.plugin`; importing this
package imports nothing.
"""
