"""The same network in two frameworks: pairing their layers, measuring each pair, copying weights.

* :mod:`~multiviz.parity.compare` — run both models, capture every layer,
  measure (:func:`multiviz.compare`), or do it from arrays already captured;
* :mod:`~multiviz.parity.report` — :class:`~multiviz.parity.report.ParityReport`,
  one record with a table, JSON and (drawn by :mod:`multiviz.render.parity`) figures;
* :mod:`~multiviz.parity.pairing` — which layer of one model is which of the other;
* :mod:`~multiviz.parity.metrics` — how close two arrays are (errors, cosine, CKA);
* :mod:`~multiviz.parity.transfer` — copy weights between the frameworks
  (:func:`multiviz.transfer_weights`), layouts converted by
  :mod:`multiviz.core.weight_layouts`.

NumPy only: the frameworks are reached through :mod:`multiviz.backends`, and
nothing here draws.
"""
