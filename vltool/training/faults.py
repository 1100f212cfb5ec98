"""Fault injection for crash-safety tests: signal this process after a chosen optimizer step.

``VLTOOL_FAULT_AFTER_STEP="finetune:7:KILL,warmup:3:INT"`` sends SIGKILL to the process after
step 7 of the task whose name starts with ``finetune`` (after that step's checkpoint, if any, is
written), or SIGINT (what Ctrl-C sends) after step 3 of the warm-up. The tests use it to stop a
real ``vltool`` subprocess at an exact point, then resume it and compare with an uninterrupted
run; unset, it costs one dict lookup per run.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "VLTOOL_FAULT_AFTER_STEP"


def planned_faults(task: str) -> dict[int, signal.Signals]:
    """Step -> signal for this task, parsed from the environment (empty when unset)."""
    spec = os.environ.get(ENV, "")
    faults: dict[int, signal.Signals] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        prefix, step, name = item.split(":")
        if task.startswith(prefix):
            faults[int(step)] = getattr(signal, f"SIG{name.upper()}")
    return faults


def maybe_fault(faults: dict[int, signal.Signals], step: int) -> None:
    """Deliver the fault planned for ``step``, synchronously.

    SIGKILL from ``os.kill`` ends the process before the call returns. SIGINT sent the same way is
    only noted by the C handler; Python runs its handler at some later bytecode boundary, which under
    load can fall inside a finaliser or a worker thread's callback, where the KeyboardInterrupt is
    swallowed and the run goes on. So SIGINT calls the installed Python handler right here, exactly
    what Ctrl-C would run, and the fault fires at the named step whatever the load.
    """
    sig = faults.get(step)
    if sig is None:
        return
    handler = signal.getsignal(sig)
    if sig == signal.SIGINT and callable(handler):
        handler(sig, sys._getframe())
        return
    os.kill(os.getpid(), sig)
