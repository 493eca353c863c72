"""A griffe extension: read multiviz's reST-flavoured docstrings as Markdown.

Two rewrites, applied to each docstring before griffe parses it:

* ``Example:`` becomes ``Examples:``. multiviz docstrings end with an
  ``Example:`` section of doctest lines (the project's docstring rule); griffe
  maps only the plural to an examples section, whose ``>>>`` lines become
  highlighted code. The singular would be an admonition of plain Markdown,
  where doctest output such as ``['conv1', 'fc']`` even reads as a link.
* Sphinx roles such as ``:func:`multiviz.normalize``` and
  ``:class:`~multiviz.LayerInfo``` become inline code (the ``~`` form keeps
  the last name, as Sphinx shows it) instead of a literal ``:func:``.

Loaded by mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class ReadableDocstrings(griffe.Extension):
    """Rename ``Example:`` sections and turn Sphinx roles into inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        value = _EXAMPLE.sub(r"\1Examples:", docstring.value)
        docstring.value = _ROLE.sub(_role, value)
