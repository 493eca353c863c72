"""One check for every number a caller passes: finite, of the right kind, in range.

Every public function and every command-line option that takes a number goes
through :func:`check_number` (the API: the error names the caller's
parameter) or :func:`parse_number` (the command line: argparse prefixes the
option's name). NaN compares false with everything, so a range check written
as ``if x < 0: raise`` lets NaN through; here a value must be finite before
its range is looked at, and ``inf`` is refused unless the range says
otherwise.

Example:
    >>> check_number(0.5, "alpha", low=0, high=1)
    0.5
    >>> check_number(float("nan"), "atol", low=0)
    Traceback (most recent call last):
    ...
    multiviz.errors.NumberError: `atol` must be a finite number >= 0. Received: atol=nan
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from multiviz.errors import NumberError

__all__ = ["check_number", "check_numbers", "describe_range", "parse_number"]


def describe_range(
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> str:
    """What a valid value is, in words ("a finite number > 0", "a whole number >= 1").

    Example:
        >>> describe_range(low=0, high=1)
        'a number in [0, 1]'
        >>> describe_range(low=1, integer=True)
        'a whole number >= 1'
    """
    kind = "a whole number" if integer else "a finite number"
    if low is not None and high is not None:  # a bounded number is finite
        kind = "a whole number" if integer else "a number"
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high:g}"
    return kind


def _problem(
    value: Any,
    low: float | None,
    high: float | None,
    low_open: bool,
    high_open: bool,
    integer: bool,
) -> bool:
    """True when ``value`` is not a valid number for this range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return True
    if integer and not isinstance(value, numbers.Integral):
        return True
    v = float(value)
    if not math.isfinite(v):
        return True
    if low is not None and (v <= low if low_open else v < low):
        return True
    return high is not None and (v >= high if high_open else v > high)


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    hint: str | None = None,
) -> Any:
    """Return ``value`` when it is a finite number in range; else raise naming ``name``.

    Args:
        value: what the caller passed (a Python or NumPy number; ``bool`` is refused).
        name: the caller's parameter name, as it appears in their call.
        low, high: the bounds (``None``: unbounded on that side).
        low_open, high_open: the bound itself is not allowed.
        integer: a whole number is required (``int`` or a NumPy integer).
        hint: an optional ``hint:`` line to add after the message.

    Returns:
        ``value``, unchanged.

    Raises:
        NumberError: NaN, ±Inf, not a number, not whole when ``integer``, or
            out of range. The first line names ``name``, what was received
            and what is valid.

    Example:
        >>> check_number(3, "steps", low=1, integer=True)
        3
        >>> check_number(0, "steps", low=1, integer=True)
        Traceback (most recent call last):
        ...
        multiviz.errors.NumberError: `steps` must be a whole number >= 1. Received: steps=0
    """
    if _problem(value, low, high, low_open, high_open, integer):
        rule = describe_range(
            low=low, high=high, low_open=low_open, high_open=high_open, integer=integer
        )
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message = f"`{name}` must be {rule}. Received: {name}={shown}"
        if hint:
            message += f"\nhint: {hint}"
        raise NumberError(message)
    return value


def check_numbers(values: Any, name: str, **rule: Any) -> tuple[Any, ...]:
    """:func:`check_number` for each item of a sequence (e.g. per-channel ``mean``).

    Example:
        >>> check_numbers((0.5, 0.25), "std", low=0, low_open=True)
        (0.5, 0.25)
    """
    if isinstance(values, numbers.Real):
        values = (values,)
    if not isinstance(values, Sequence) and not hasattr(values, "__iter__"):
        raise NumberError(
            f"`{name}` must be a number or a sequence of numbers. Received: {type(values).__name__}"
        )
    items = tuple(values.tolist() if hasattr(values, "tolist") else values)
    for item in items:
        try:
            check_number(item, name, **rule)
        except NumberError:
            raise NumberError(
                f"`{name}` must hold only {describe_range(**rule)}s. Received: {name}={items!r}"
            ) from None
    return items


def parse_number(
    text: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Read a command-line number and check it with the same rule as :func:`check_number`.

    Raises:
        ValueError: not a number, NaN, ±Inf or out of range; the message
            starts with "expected", for argparse to put after the option's name.

    Example:
        >>> parse_number("0.25", low=0, high=1)
        0.25
        >>> parse_number("nan", low=0)
        Traceback (most recent call last):
        ...
        ValueError: expected a finite number >= 0, got 'nan'
    """
    rule = dict(low=low, high=high, low_open=low_open, high_open=high_open, integer=integer)
    try:
        value: Any = int(text) if integer else float(text)
    except (TypeError, ValueError):
        value = None
    if value is None or _problem(value, **rule):
        raise ValueError(f"expected {describe_range(**rule)}, got {text!r}")
    return value
