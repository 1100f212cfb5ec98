"""Errors the CLI turns into one line and a documented exit code.

Everything a user can act on derives from ``VltoolError``; the CLI prints its message as ONE
line (no traceback unless ``--debug``) and exits with the class's ``exit_code``:

- 1 ``DownloadFailed``: a hub download failed (network, server); rerunning may succeed.
- 2 ``UserError``: bad input (a wrong recipe key, a missing file, a mismatched artifact or width).
- 3 ``RunDiverged``: training produced a non-finite loss; the last good checkpoint is kept.
- 4 ``DiskFull``: the disk filled while writing a checkpoint, the artifact or the feature cache;
  the partial files are removed, the last complete checkpoint is kept for ``--resume``.
- 130 ``Interrupted``: Ctrl-C (SIGINT); the message says how to resume.

Separate codes let a shell script tell "fix your command" from "lower the LR and resume".
"""

from __future__ import annotations


class VltoolError(Exception):
    """An error whose message is meant for the user, shown without a traceback."""

    exit_code = 1


class UserError(VltoolError):
    """Bad input: a wrong recipe key, a missing file, a mismatched artifact or width."""

    exit_code = 2


class NotImplementedYet(UserError):
    """A subcommand whose stage has not landed yet: says so plainly instead of pretending."""


class DownloadFailed(VltoolError):
    """A hub download failed for a reason outside the command (network, the hub's servers): exit 1,
    so a script can retry it, unlike a wrong name or revision (a ``UserError``, exit 2)."""

    exit_code = 1


class RunDiverged(VltoolError):
    """Training produced NaN/inf and stopped cleanly, keeping the last good checkpoint."""

    exit_code = 3


class DiskFull(VltoolError):
    """Out of disk space while writing: the message names the filesystem, the path and the bytes needed."""

    exit_code = 4


class Interrupted(VltoolError):
    """The user pressed Ctrl-C; the message names the checkpoint a ``--resume`` continues from."""

    exit_code = 130
