"""Errors a user can fix.

Any ``UserError`` raised anywhere below the CLI is shown as ONE line (no traceback unless
``--debug``) and the process exits with code 2. Messages name the file / key / alias /
tensor at fault and what was expected, so the user can act without reading code.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a wrong recipe key, a missing file, a mismatched artifact or width."""

    exit_code = 2


class NotImplementedYet(UserError):
    """A subcommand whose stage has not landed yet: says so plainly instead of pretending."""


class NonFiniteLoss(RuntimeError):
    """Training produced NaN/inf; the loop stops cleanly and keeps the last good checkpoint."""
