"""The one error a command stops on with a single line: a misconfiguration that retrying cannot
fix (a missing certificate, a refused password, a topic the product needs and may not create).
`stream-app` prints its message alone, without a traceback, and exits with status 2."""

from __future__ import annotations


class SetupError(RuntimeError):
    """A misconfiguration; the message names the setting or the cause, on one line."""
