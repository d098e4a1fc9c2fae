"""Offline training: load history (`data`), train and evaluate (`maintenance`), linear
baselines (`baselines`), the evaluation report (`report`).

`from stream_app.training import train_maintenance, TrainConfig` works; torch is imported only
when one of those names is used.
"""

from typing import Any

__all__ = ["TrainConfig", "simulated_history", "train_maintenance"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from stream_app.training import maintenance

        return getattr(maintenance, name)
    raise AttributeError(name)
