"""Which attribution map to trust: faithfulness, localization and sanity checks.

The metrics are NumPy and see a model only through a *scorer*
(``score(inputs, rows) -> scores``, :mod:`~multiviz.evaluation.perturbation`);
:func:`multiviz.evaluate` runs the methods and metrics on a PyTorch or Keras
model and returns an :class:`~multiviz.evaluation.report.EvaluationReport`.

* :mod:`~multiviz.evaluation.perturbation` — deletion / insertion (RISE)
* :mod:`~multiviz.evaluation.road` — ROAD's noisy linear imputation
* :mod:`~multiviz.evaluation.localization` — pointing games, IoU
* :mod:`~multiviz.evaluation.randomization` — Adebayo et al.'s sanity checks
* :mod:`~multiviz.evaluation.similarity` — Spearman, SSIM
* :mod:`~multiviz.evaluation.stats` — bootstrap intervals
* :mod:`~multiviz.evaluation.report` — the report record
"""
