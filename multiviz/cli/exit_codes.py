"""What the command line can fail with, and the exit code each failure gets.

Example:
    >>> EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DIFFERENT
    (0, 1, 2, 3)
"""

from __future__ import annotations

from multiviz.errors import MultivizError

__all__ = [
    "EXIT_DIFFERENT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "ModelsDifferError",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DIFFERENT = 3


class UsageError(MultivizError, ValueError):
    """The command line itself is wrong (an unknown option, a bad value)."""


class ModelsDifferError(MultivizError):
    """``compare`` ran, and the models disagree beyond the tolerance."""
