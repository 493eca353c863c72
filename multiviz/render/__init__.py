"""Drawing feature maps: NumPy montages, colormapping, PNGs and matplotlib figures.

* :mod:`multiviz.render.montage` — tile many maps into one 2-D array (NumPy only);
* :mod:`multiviz.render.colors` — colormap lookup tables, ``colorize``;
* :mod:`multiviz.render.rgb` — figure-free RGB images, overlays and
  ``save_image`` (the fast path for files and HTML);
* :mod:`multiviz.render.figures` — matplotlib figures (object-oriented API,
  ``Figure()``, no pyplot state): feature maps, aggregates, overlays, layer stats.

A grid of hundreds of maps is one array drawn with one ``imshow``, never one
axes per map. The public names live on the package: ``mv.montage``,
``mv.colorize``, ``mv.feature_map_image``, ``mv.plot_feature_maps``…
This package imports nothing itself, so ``import multiviz`` stays cheap.
"""
