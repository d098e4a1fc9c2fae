"""Progress of long work (training, replays, retraining, the benchmark suite), shown the same
way everywhere: one bar per piece of work on standard error, drawn only when standard error is
a terminal, so logs, pipes and CI stay quiet. `STREAM_APP_PROGRESS=0` hides the bars on a
terminal too; `=1` draws them off one (for a tool that shows a pipe live).

Work with a known size counts its units (`bar(total=..., unit="epoch")`); work made of named
steps shows the step it is in (`Steps`)."""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from tqdm import tqdm


def enabled() -> bool:
    forced = os.environ.get("STREAM_APP_PROGRESS", "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


def bar(desc: str, total: Optional[float] = None, unit: str = "it", leave: bool = True) -> tqdm:
    """A bar counting `unit`s of `desc` (advance it with `.update(n)`, end it with `.close()` or
    as a context manager). A disabled bar costs a method call per update."""
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not enabled(), file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, unit_scale=unit not in ("epoch", "step", "run"))


class Steps:
    """Named steps of one piece of work, e.g. a trainer's graph, models and calibration: the bar
    shows how many are done and which one runs."""

    def __init__(self, desc: str, names: Sequence[str]) -> None:
        self.names = list(names)
        self._bar = bar(desc, total=len(self.names), unit="step")
        self._current: Optional[str] = None

    def __call__(self, name: str) -> None:
        """Step `name` starts; the one before it is done."""
        if self._current is not None:
            self._bar.update(1)
        self._current = name
        self._bar.set_postfix_str(name, refresh=True)

    def close(self) -> None:
        if self._current is not None:
            self._bar.update(1)
            self._current = None
        self._bar.close()

    def __enter__(self) -> "Steps":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

