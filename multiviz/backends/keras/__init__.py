"""The Keras 3 backend: sub-models over a model's own graph, gradients per Keras backend.

The same file names as :mod:`multiviz.backends.torch`, one concern each:
``adapter`` (the :class:`~multiviz.backends.contract.Backend`), ``layers``
(sites: names, kinds, layouts), ``inputs`` (checking and converting an
input), ``capture`` (cached capture plans), ``gradients`` (dispatch to the
code for the Keras backend in use), ``state`` (patches on layer instances,
always undone), ``weights``, ``load``, ``builtin``. Only Keras has
``gradients_tf`` / ``gradients_tf_fast`` (TensorFlow's ``GradientTape``; see
:mod:`~multiviz.backends.keras.gradients` for where the JAX and torch code
goes) and ``resnet18`` (a Keras twin of torchvision's ResNet-18). Reach them
through :func:`multiviz.backends.plugin`; importing this package imports nothing.
"""
