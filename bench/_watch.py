"""Run a child process and sample a memory figure of it (and its descendants) until it exits."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable


def run_watched(cmd: list[str], env: dict, sample: Callable[[int], int], merge_stderr: bool = False,
                every_s: float = 0.02) -> tuple[int, str, int]:
    """(peak of ``sample(pid)`` while it ran, its stdout, its return code)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else None, text=True)
    peak = 0

    def watch() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, sample(proc.pid))
            time.sleep(every_s)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    thread.join()
    return peak, out, proc.returncode
