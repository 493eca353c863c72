"""The exit code each command-line failure gets.

The errors themselves live with every other in :mod:`multiviz.errors`
(:class:`~multiviz.errors.UsageError` for a wrong command line,
:class:`~multiviz.errors.ModelsDifferError` when ``compare`` finds the models
differ); :func:`multiviz.cli.exit_code` maps an error to its code.

Example:
    >>> EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DIFFERENT
    (0, 1, 2, 3)
"""

from __future__ import annotations

__all__ = ["EXIT_DIFFERENT", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DIFFERENT = 3
