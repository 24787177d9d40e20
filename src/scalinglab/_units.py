"""Parse human quantities such as "1.2B", "3e9", "70,000,000", "500M"."""
from __future__ import annotations

import math
import re

_SUFFIX = {
    "": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "b": 1e9, "B": 1e9, "g": 1e9, "G": 1e9,
    "t": 1e12, "T": 1e12, "p": 1e15, "P": 1e15, "e": 1e18, "E": 1e18,
}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d[\d_,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKmMbBgGtTpPeE]?)\s*$")


def parse_quantity(value: object) -> float:
    """Return ``value`` as a float, accepting SI-like suffixes (k, M, B/G, T, P).

    Raises:
        ValueError: when the value is not a number in any accepted spelling.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a number")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"a {len(str(abs(value)))}-digit integer is too large to be a quantity") from None
    if value is None:
        raise ValueError("empty value")
    text = str(value).strip()
    if text == "":
        raise ValueError("empty value")
    low = text.lower()
    if low in {"nan", "inf", "+inf", "-inf", "infinity", "-infinity"}:
        return float(low.replace("infinity", "inf"))
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a number (accepted: 3e9, 1.2B, 500M, 70k, 1,000)")
    number, suffix = match.groups()
    return float(number.replace(",", "").replace("_", "")) * _SUFFIX[suffix]


def format_quantity(x: float, digits: int = 3) -> str:
    """Format a count as 1.23B / 456M / 7.8k, or scientific for FLOPs-sized numbers."""
    if x is None or not math.isfinite(x):
        return str(x)
    ax = abs(x)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if ax >= scale:
            if ax >= 1e15:
                return f"{x:.{digits - 1}e}"
            return f"{x / scale:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"
