"""The one error a history file raises when it cannot be used at all."""

from __future__ import annotations


class DataError(ValueError):
    """The file cannot be used at all (unreadable, wrong layout or mapping, or mostly bad rows).
    Its message is one line naming the cause and the fix. Re-exported by
    stream_app.training.data, where callers catch it."""
