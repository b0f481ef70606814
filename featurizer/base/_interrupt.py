"""Ctrl-C that cannot be lost.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be; when that is a weakref
callback or a ``__del__``, the exception is printed as "ignored" and the run goes on to finish as if
nothing had happened. Here the interrupt is also remembered: the batch loops ask for it after each
batch, and the command line reports it when a command returns, so an interrupted run always stops
with exit code 130.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = False


def _on_sigint(signum, frame) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def _quiet_about_interrupts(unraisable) -> None:
    """A swallowed Ctrl-C is not an error to print ("Exception ignored in ..."): it is remembered."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def interrupted() -> bool:
    """Whether Ctrl-C was pressed since :func:`catching_interrupts` began."""
    return _requested


def raise_if_interrupted() -> None:
    """Stop here if a Ctrl-C was pressed and its exception was swallowed on the way."""
    if _requested:
        raise KeyboardInterrupt


@contextmanager
def catching_interrupts() -> Iterator[None]:
    """Remember Ctrl-C while the block runs (main thread, and only where Python's own handler is set:
    an ignored SIGINT stays ignored)."""
    global _requested
    _requested = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    hook = sys.unraisablehook
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _quiet_about_interrupts
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        _requested = False
