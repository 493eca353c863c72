"""The NumPy core: what every framework's arrays become, and what is done with them.

Nothing here imports a framework or matplotlib (a test keeps that promise):

* :mod:`~multiviz.core.records` — :class:`~multiviz.core.records.Activations`
  and :class:`~multiviz.core.records.LayerInfo`, what a backend reports;
* :mod:`~multiviz.core.names` — the layer-key grammar ``name#k[i]``: resolve,
  match and select, once;
* :mod:`~multiviz.core.layout` — which axis is what; channel-order conversion;
* :mod:`~multiviz.core.resize` — bilinear resizing of maps;
* :mod:`~multiviz.core.normalize` — display scaling into ``[0, 1]``;
* :mod:`~multiviz.core.reduce` — aggregate over channels, select channels;
* :mod:`~multiviz.core.stats` — streaming, mergeable statistics;
* :mod:`~multiviz.core.weight_layouts` — per-layer parameters and their
  layout conversions between frameworks.
"""
