"""Data-set scans: one streaming pass for unit statistics, exemplars and dissection.

The folder is named ``scanning`` rather than ``scan`` so that importing it
never shadows the public function ``multiviz.scan``.

* :mod:`~multiviz.core.stats` — mergeable per-channel reducers
  (moments, counts, quantile sketches, top-k);
* :mod:`~multiviz.scanning.fields` — receptive fields, composed or probed;
* :mod:`~multiviz.scanning.dissection` — Network Dissection's upsampling and IoU sums.
"""
