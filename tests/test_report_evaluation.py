"""The HTML report's "Which map to trust" section (``html_report(evaluation=...)``).

The section shows an :class:`~multiviz.EvaluationReport`'s own table cells,
escaped (a method name is the caller's text), its figure as an embedded PNG,
and nothing at all unless asked. A report made here from per-image values
whose means are known by hand checks the cells; the built-in CNN checks the
three ways of asking (a report, ``True``, a dict of ``mv.evaluate``'s options).
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from multiviz.evaluation.report import EvaluationReport


def _sections(text: str) -> str:
    start = text.index('<section id="evaluation">')
    return text[start : text.index("</section>", start)]


@pytest.mark.torch
def test_the_section_shows_the_reports_cells_escaped_and_its_figure():
    import multiviz as mv

    hostile = "<script>alert(1)</script>"
    values = {
        "grad_cam": {"deletion": np.array([0.25, 0.5, 0.75])},  # mean 0.5
        hostile: {"deletion": np.array([2.0, 2.5, 3.0])},  # mean 2.5
    }
    curves = {m: {"deletion": np.array([[1.0, 0.5, 0.0]] * 3)} for m in values}
    report = EvaluationReport.from_values(values, resamples=200, curves=curves)
    model = mv.builtin_model("torch")
    text = mv.html_report(model, mv.sample_image()[None], cam=False, evaluation=report)
    section = _sections(text)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert ">0.500 [" in section and ">2.500 [" in section  # the means, as the table prints them
    assert '<tfoot><tr><th scope="row">best</th><td>grad_cam</td>' in section
    uri = section.split('<img src="', 1)[1].split('"', 1)[0]
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "PNG" and image.size[0] > 300
    # not asked: no section, no link
    plain = mv.html_report(model, mv.sample_image()[None], cam=False)
    assert 'id="evaluation"' not in plain and "#evaluation" not in plain
    with pytest.raises(TypeError, match=r"`evaluation` must be an EvaluationReport.*str"):
        mv.html_report(model, mv.sample_image()[None], evaluation="yes")


@pytest.mark.torch
def test_asking_with_true_or_options_runs_mv_evaluate_on_every_sample():
    import multiviz as mv

    model = mv.builtin_model("torch")
    data = mv.shapes_dataset(4, size=48, seed=1)
    options = {"methods": ["grad_cam"], "metrics": ["pointing_game"], "boxes": data.boxes}
    text = mv.html_report(model, data.images, cam=False, evaluation=options)
    want = mv.evaluate(model, data.images, **options)
    cell = want.table_cells()[1][0][1]  # grad_cam's pointing game over all four images
    assert f">{cell}<" in _sections(text)
    assert '<th scope="row">images</th><td>4</td>' in _sections(text)
    # True: mv.evaluate's defaults (grad_cam and saliency; deletion, insertion, ROAD,
    # randomization, as no boxes are given) on every sample
    small = mv.shapes_dataset(2, size=32, seed=4).images
    section = _sections(mv.html_report(model, small, cam=False, evaluation=True))
    for head in ("deletion ↓", "insertion ↑", "road ↑", "randomization ↓"):
        assert f">{head}<" in section
    assert ">grad_cam<" in section and ">saliency<" in section
    assert '<th scope="row">images</th><td>2</td>' in section
