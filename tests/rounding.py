"""Comparing numbers a script printed rounded: the check allows exactly the rounding.

A printed value ``v`` shown with ``digits`` decimals stands for any true value in
``[v - h, v + h]`` with ``h = 0.5 * 10**-digits``. A ratio printed from unrounded numbers is
consistent with the printed (rounded) numerator and denominator when the interval of ratios those
two allow, widened by the ratio's own rounding, holds it.
"""

from __future__ import annotations


def half_unit(digits: int) -> float:
    return 0.5 * 10.0 ** -digits


def ratio_consistent(printed_ratio: float, numerator: float, denominator: float, ratio_digits: int = 2,
                     numerator_digits: int = 0, denominator_digits: int = 0) -> bool:
    """Whether ``printed_ratio`` (``ratio_digits`` decimals) can be the rounded value of ``a / b`` for
    some true ``a`` and ``b`` that print as ``numerator`` and ``denominator``."""
    a, b = half_unit(numerator_digits), half_unit(denominator_digits)
    if denominator - b <= 0:
        return True  # the denominator may be as small as zero: any ratio fits
    low = max(0.0, numerator - a) / (denominator + b)
    high = (numerator + a) / (denominator - b)
    slack = half_unit(ratio_digits) + 1e-12
    return low - slack <= printed_ratio <= high + slack


def sum_consistent(total: float, parts: list[float], digits: int = 0) -> bool:
    """Whether ``total`` and ``parts``, each printed with ``digits`` decimals, can come from true
    values whose parts add up to the total."""
    return abs(total - sum(parts)) <= half_unit(digits) * (len(parts) + 1) + 1e-12
