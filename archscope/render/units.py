"""Numbers as every renderer prints them: counts, bytes and times, one way each.

The same byte count reads the same in ``summary``'s totals, ``bench``'s memory columns, ``check``'s
memory line and ``export``'s file size. No torch import.
"""

from __future__ import annotations


def human_count(n: int) -> str:
    """A count with an SI prefix, two decimals: ``138357544`` → ``138.36 M``; below 1,000 as is.

    >>> human_count(2_794_240), human_count(640)
    ('2.79 M', '640')
    """
    for unit, size in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """Bytes in binary units, two decimals: ``553430176`` → ``527.79 MiB``; below 1 KiB as is.

    >>> human_bytes(2**30), human_bytes(373_288), human_bytes(64)
    ('1.00 GiB', '364.54 KiB', '64 B')
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.2f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")


def milliseconds(ms: float) -> str:
    """A step or pass time in milliseconds, two decimals, no unit (tables say ``ms`` in the
    header): ``13.7512`` → ``13.75``."""
    return f"{ms:.2f}"


def seconds(s: float) -> str:
    """A wall time in seconds, one decimal: ``2.23`` → ``2.2 s``."""
    return f"{s:.1f} s"


def percent(fraction: float) -> str:
    """A fraction as a percentage, one decimal: ``0.4213`` → ``42.1%``."""
    return f"{fraction:.1%}"


def signed_percent(pct: float) -> str:
    """A percentage that is already ×100, signed, one decimal: ``-4.25`` → ``-4.2%``."""
    return f"{pct:+.1f}%"
