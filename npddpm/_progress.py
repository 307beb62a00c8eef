"""Progress bars for the long loops (sampling, ``nll``, ``verify``, ``conform``): one policy.

``progress`` is tri-state everywhere it is accepted: ``True`` shows a bar, ``False`` shows
none, ``None`` (auto) shows one only when standard error is a terminal, so redirected logs
stay free of carriage-return updates. A bar asked for on a non-terminal is refreshed at most
every :data:`NON_TTY_INTERVAL` seconds. Bars never touch the computation: they only count.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["NON_TTY_INTERVAL", "bar", "enabled"]

NON_TTY_INTERVAL: float = 10.0


def enabled(progress: bool | None) -> bool:
    """Whether to show progress: ``progress`` itself, or ``sys.stderr.isatty()`` for None."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty is not None and isatty())
    return bool(progress)


def bar(total: int | None, desc: str, progress: bool | None, *, unit: str = "step") -> Any:
    """A ``tqdm`` bar over ``total`` items on standard error, disabled unless
    :func:`enabled` (a disabled bar's ``update``/``close`` do nothing). Use as a context
    manager or close it."""
    from tqdm.auto import tqdm

    show = enabled(progress)
    tty = show and enabled(None)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not show,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.1 if tty else NON_TTY_INTERVAL,
    )
