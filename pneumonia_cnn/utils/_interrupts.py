"""Holding Ctrl-C and SIGTERM while work that must not be cut in half runs."""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["deferred_interrupts"]

_deferring = False  # True inside deferred_interrupts() in the main thread


@contextlib.contextmanager
def deferred_interrupts():
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them.

    A write to the tracking store cut in half by ``KeyboardInterrupt`` can leave a SQLite
    transaction open, and the database then stays locked for every later write of the same
    process -- including the ones that save an interrupted fit.  Each store write of
    :class:`TrackedRun` runs inside this block.  A second signal during the same block is
    delivered at once (press Ctrl-C twice to stop immediately).  Outside the main thread,
    where Python never runs signal handlers, and inside an outer block, this does nothing.
    """
    global _deferring
    if _deferring or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    old = {}

    def restore():
        for signum, handler in old.items():
            signal.signal(signum, handler)
        old.clear()

    def hold(signum, frame):
        if pending:  # second signal: stop now
            pending.clear()
            restore()
            signal.raise_signal(signum)
        else:
            pending.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler not in (None, signal.SIG_IGN):  # None: not installed from Python
            old[signum] = handler
            signal.signal(signum, hold)
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        restore()
        if pending:
            signal.raise_signal(pending[0])
