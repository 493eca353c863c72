"""``multiviz scan MODEL IMAGES_DIR --layer NAME -o scan/``: a data-set scan from the shell.

Writes into the output folder:

* ``stats-<layer>.csv`` — one row per channel: mean, std, min, max, median,
  99.5th percentile, positive and saturated fractions, dead;
* ``exemplars-<layer>.png`` — a montage: a row per channel (the most active
  ones), its top-k receptive-field crops left to right;
* ``dissection.png`` / ``dissection-<layer>.csv`` — with ``--masks``;
* ``scan.npz`` — the scan itself (:func:`multiviz.load_scan`; continues an
  interrupted run);
* ``index.html`` — one page with the dead-unit table and the montages.
"""

from __future__ import annotations

import argparse
import csv
import html
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_scan_parser", "cmd_scan"]


def add_scan_parser(add: Any, model_args: argparse.ArgumentParser) -> None:
    """Register the ``scan`` subcommand (``add(name, help, parents)`` makes a subparser)."""
    from multiviz.cli.parser import _add_preprocessing_args, _positive_int, add_batch_size

    p = add(
        "scan",
        "Scan a folder of images: per-channel statistics, dead units, top-k exemplar montages.",
        [model_args],
    )
    p.add_argument("images", metavar="IMAGES_DIR", help="a folder of images")
    p.add_argument(
        "--layer",
        action="append",
        required=True,
        metavar="NAME",
        help="layer name or glob pattern, as `multiviz layers` lists them (repeatable)",
    )
    p.add_argument(
        "--topk", type=_positive_int, default=16, metavar="K", help="exemplars per channel (16)"
    )
    p.add_argument(
        "--channels",
        type=_positive_int,
        default=16,
        metavar="N",
        help="channels per montage: the N with the highest exemplar scores (16)",
    )
    add_batch_size(p)
    p.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="local (default) or ray"
    )
    p.add_argument(
        "--masks",
        metavar="NPY",
        help="concept masks for Network Dissection: a .npy of int (N, H, W) concept maps "
        "(negative: none) aligned with the sorted images; with --concepts",
    )
    p.add_argument("--concepts", metavar="A,B,...", help="concept names, one per index in --masks")
    _add_preprocessing_args(p)
    p.add_argument(
        "-o", "--output", default="scan", metavar="DIR", help="folder to write (default: scan)"
    )
    p.set_defaults(run=cmd_scan)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "layer"


def cmd_scan(args: argparse.Namespace) -> int:
    """Run the scan and write the folder described in the module docstring."""
    import multiviz as mv
    from multiviz.cli.exit_codes import EXIT_OK
    from multiviz.cli.inputs import model_from_args
    from multiviz.cli.output import print_written
    from multiviz.errors import UsageError

    loaded = model_from_args(args, "a scan of its layers")
    folder = Path(args.images)
    if not folder.is_dir():
        raise UsageError(f"IMAGES_DIR must be a folder of images. Received: {args.images!r}")
    prep = loaded.preprocess.override(
        size=args.size, mean=args.mean, std=args.std, normalize=not args.no_normalize
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    scan = mv.scan(
        loaded.model,
        folder,
        args.layer,
        topk=args.topk,
        engine=args.engine,
        batch_size=args.batch_size,
        preprocess=prep,
        max_pixels=args.max_pixels,
        checkpoint=out / "scan.npz",
        progress=False if args.quiet else None,
    )
    written = [out / "scan.npz"]
    sections = []
    for layer in scan.layers:
        slug = _slug(layer)
        rows = scan.table(layer)
        path = out / f"stats-{slug}.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
        png = None
        if scan.fields.get(layer) is not None or scan.input_size is not None:
            channels = scan.top_channels(layer, args.channels)
            fig = scan.plot_exemplars(layer, channels)
            png = out / f"exemplars-{slug}.png"
            fig.savefig(png)
            written.append(png)
        sections.append((layer, rows, png))
    dissection = None
    if args.masks:
        dissection = _dissect(args, scan, folder, out, written)
    index = out / "index.html"
    index.write_text(_page(scan, sections, dissection, loaded.spec.text, str(folder)))
    written.append(index)
    print_written(args, written)
    return EXIT_OK


def _dissect(args: argparse.Namespace, scan: Any, folder: Path, out: Path, written: list) -> Any:
    from multiviz.errors import UsageError

    masks = np.load(args.masks, allow_pickle=False)
    if masks.ndim != 3 or masks.dtype.kind not in "iu" or len(masks) != scan.samples:
        raise UsageError(
            f"--masks must be an int array (N, H, W) with one map per image ({scan.samples}). "
            f"Received shape {masks.shape}, dtype {masks.dtype}."
        )
    names = args.concepts.split(",") if args.concepts else None
    if names is None:
        names = [f"concept {i}" for i in range(int(masks.max()) + 1)]
    d = scan.dissect(
        folder,
        masks,
        concepts=names,
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
    )
    for layer, part in d.items():
        path = out / f"dissection-{_slug(layer)}.csv"
        rows = part.table()
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    png = out / "dissection.png"
    d.plot().savefig(png)
    written.append(png)
    return d


def _page(scan: Any, sections: list, dissection: Any, model: str, images: str) -> str:
    """One self-contained page: summary, dead units, montages (linked PNGs)."""
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>multiviz scan</title>",
        "<style>body{font:14px sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        "th{background:#eee}img{max-width:100%}</style>",
        f"<h1>Scan of {e(model)}</h1><p>{scan.samples} images from {e(images)}.</p>",
    ]
    for layer, rows, png in sections:
        dead = [r["channel"] for r in rows if r["dead"]]
        parts.append(f"<h2>{e(layer)}</h2>")
        parts.append(
            f"<p>{len(dead)} of {len(rows)} channels dead (never &gt; 0 over "
            f"{scan.samples} images)" + (f": {e(str(dead[:40]))}" if dead else "") + ".</p>"
        )
        if png is not None:
            parts.append(f"<img src='{e(png.name)}' alt='exemplars of {e(layer)}'>")
        head = "".join(f"<th>{e(k)}</th>" for k in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r.values()) + "</tr>"
            for r in rows[:64]
        )
        parts.append(
            f"<details><summary>statistics per channel</summary><table>"
            f"<tr>{head}</tr>{body}</table></details>"
        )
    if dissection is not None:
        parts.append("<h2>Network Dissection</h2><img src='dissection.png' alt='dissection'>")
        parts.append(f"<pre>{e(repr(dissection))}</pre>")
    return "\n".join(parts)


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "dead" if v else ""
    if isinstance(v, float):
        return "–" if np.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))
