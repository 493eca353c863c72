"""Where models and images come from.

* :mod:`~multiviz.sources.models` — model specs (``builtin``,
  ``torchvision:NAME``, ``keras:NAME``, saved files) and
  :func:`~multiviz.sources.models.load_model`, which hands the loading to the
  framework's ``load`` plugin (:func:`multiviz.backends.plugin`);
* :mod:`~multiviz.sources.images` — reading image files and arrays, and each
  model family's preprocessing;
* :mod:`~multiviz.sources.builtin` — the built-in CNN and its shipped weights;
* :mod:`~multiviz.sources.shapes_dataset` — the generated images it was trained on.

Importing this package imports nothing; no module here imports a framework.
"""
