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
    """Deliver the fault planned for ``step``, synchronously, whatever the process inherited.

    SIGKILL from ``os.kill`` ends the process before the call returns. SIGINT is what Ctrl-C
    sends, and the run must stop here exactly as a Ctrl-C in a terminal stops it, so it is not sent
    through the kernel at all:

    - a process started in the background by a non-interactive shell (CI, ``cmd &``, nohup)
      inherits SIGINT *ignored*, and Python then installs no handler: a sent SIGINT does nothing and
      the run finishes (seen on a fresh machine: exit 0 where 130 was expected);
    - even with Python's handler installed, a sent signal only runs it at some later bytecode,
      which can fall inside a finaliser where the KeyboardInterrupt is swallowed.

    So the installed Python handler is called right here, or, when there is none (ignored or
    default), the KeyboardInterrupt Python's own Ctrl-C handler would raise is raised.
    """
    sig = faults.get(step)
    if sig is None:
        return
    if sig != signal.SIGINT:
        os.kill(os.getpid(), sig)
        return
    handler = signal.getsignal(sig)
    if callable(handler):
        handler(sig, sys._getframe())
        return
    raise KeyboardInterrupt
