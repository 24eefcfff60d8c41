"""What the command line shows besides its own output: library warnings as one line each, and
torch's tracing logs kept out of the way. Only the CLI installs these; the library leaves
Python's warnings and logging set-up alone.

Around a trace error torch prints the partial FX graph to stderr (``print``, not logging) and
logs fake-tensor / symbolic-shape messages, 20+ lines above our one clear error line. Inside
`quiet_torch` those go to a buffer that is thrown away (``--debug`` lets them through).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

PREFIX = "trainonce: warning: "
_state = {"active": False, "debug": False}


def warning_line(message: Warning | str, category: type[Warning]) -> str:
    """One line for a warning: the message with its whitespace folded, no file, no source line
    (a console script's would be ``sys.exit(main())``)."""
    text = " ".join(str(message).split()).removeprefix("trainonce: ") or category.__name__
    if not issubclass(category, UserWarning):
        text = f"{category.__name__}: {text}"
    return PREFIX + text


@contextlib.contextmanager
def cli_console(debug: bool = False, stream: TextIO | None = None) -> Iterator[None]:
    """For one CLI command: warnings are written to ``stream`` (default: stderr as it is now,
    so a `quiet_torch` inside does not swallow them) as `warning_line`, and `quiet_torch`
    quiets torch unless ``debug``. Everything is restored on exit."""
    err = stream if stream is not None else sys.stderr

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(warning_line(message, category), file=err, flush=True)

    previous = dict(_state)
    _state.update(active=True, debug=debug)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
    finally:
        _state.update(previous)


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """Run a torch.export / FX trace without torch's logs: the ``torch`` loggers are raised to
    CRITICAL (the standard ``logging`` levels, so ``TORCH_LOGS`` choices below it are muted too)
    and what torch prints to stderr is dropped. A no-op under ``--debug``. Warnings still reach
    the user through `cli_console`'s handler, which writes to the stream it was given.
    Outside `cli_console` (the library called from Python) it changes nothing."""
    if _state["debug"] or not _state["active"]:
        yield
        return
    loggers = [logging.getLogger("torch")] + [
        lg for name, lg in list(logging.root.manager.loggerDict.items())
        if name.startswith("torch.") and isinstance(lg, logging.Logger)
        and lg.level != logging.NOTSET
    ]
    levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in levels:
            lg.setLevel(level)
