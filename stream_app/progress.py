"""Progress of long work (training, replays, retraining, the benchmark suite), shown the same
way everywhere: one bar per piece of work on standard error, drawn only when standard error is
a terminal, so logs, pipes and CI stay quiet. `STREAM_APP_PROGRESS=0` hides the bars on a
terminal too; `=1` draws them off one (for a tool that shows a pipe live).

Work with a known size counts its units (`bar(total=..., unit="epoch")`); work made of named
steps shows the step it is in (`Steps`)."""

from __future__ import annotations

import os
import sys
from typing import Optional

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


def note(text: str) -> None:
    """A line of what the work found, printed above any bar; on a terminal only, like the bars."""
    if enabled():
        tqdm.write(text, file=sys.stderr)


class Steps:
    """The steps of one piece of work, e.g. a trainer's graph, models and calibration: the bar
    shows how many are done and what the current one does."""

    def __init__(self, desc: str, total: int) -> None:
        self._bar = bar(desc, total=total, unit="step")
        self._running = False

    def __call__(self, text: str) -> None:
        """A step starts (`text` says what it does); the one before it is done."""
        if self._running:
            self._bar.update(1)
        self._running = True
        self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self._running:
            self._bar.update(1)
            self._running = False
        self._bar.close()

    def __enter__(self) -> "Steps":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
