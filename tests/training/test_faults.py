"""Fault injection fires at the named step, synchronously, whatever the load."""

from __future__ import annotations

import signal

import pytest

from vltool.training.faults import ENV, maybe_fault, planned_faults


def test_planned_faults_are_read_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "finetune:7:KILL, warmup:3:INT")
    assert planned_faults("finetune") == {7: signal.SIGKILL}
    assert planned_faults("warmup-cached") == {3: signal.SIGINT}
    assert planned_faults("tune-mma") == {}


def test_sigint_raises_inside_the_call_not_at_some_later_bytecode() -> None:
    faults = {11: signal.SIGINT}
    maybe_fault(faults, 10)  # not this step: nothing happens
    reached = []
    with pytest.raises(KeyboardInterrupt):
        maybe_fault(faults, 11)
        reached.append("after")  # a deferred handler would let this line run
    assert reached == []


def test_sigint_runs_the_installed_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda sig, frame: seen.append(sig))
    try:
        maybe_fault({2: signal.SIGINT}, 2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT]


@pytest.mark.parametrize("inherited", [signal.SIG_IGN, signal.SIG_DFL])
def test_sigint_stops_the_run_even_when_the_process_inherited_it_ignored(inherited) -> None:
    """A background process of a non-interactive shell (CI) starts with SIGINT ignored; the planned
    Ctrl-C must still stop the run at its step."""
    previous = signal.signal(signal.SIGINT, inherited)
    try:
        with pytest.raises(KeyboardInterrupt):
            maybe_fault({4: signal.SIGINT}, 4)
    finally:
        signal.signal(signal.SIGINT, previous)
