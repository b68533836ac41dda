"""Float options parsed: a value out of range, NaN or infinity included, is a usage error
(exit 2, one line). Click's FloatRange lets NaN through (every comparison with NaN is false);
integer options use Typer's min= and max=, which hold."""

import math
from collections.abc import Callable

from digits.core.errors import UsageError


def finite_number(option: str, low: float, high: float) -> Callable[[str], float]:
    """A Typer `parser=` for a float option that must lie in [low, high]."""

    def parse(text: str | float) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{option} {text}: not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise UsageError(f"{option} {text}: give a number from {low:g} to {high:g}")
        return value

    return parse
