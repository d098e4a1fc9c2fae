"""What happens to a newly trained version once it is registered, and the evidence for it.

The trainers (`train_maintenance`, `train_demand`, `train_supply_chain`) take `promote=`:

    True or "gate"  promote through the promotion gate (stream_app.lifecycle): the first version
                    of a model always; later ones only when the comparison with the current
                    version, written into the new manifest, says it is not worse
    "force"         promote even when the gate refuses (recorded as forced, with its verdict)
    "candidate"     set as the candidate workers score in shadow; the current version stays
    False or "none" register only
    Release(...)    one of the above with the actor and reason for the history (retraining)

Before registering, a trainer that can evaluate an existing version on its own held-out data
does so for the current version and stores both sets of the gate's offline metrics as the
manifest's "comparison" (`comparison()`): both measured by the same code on the same data, as
the gate requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Optional, Union, get_args

from stream_app.lifecycle.gate import GATES, metric_value
from stream_app.lifecycle.promotion import override, promote_with_gate
from stream_app.registry import HistoryEntry, ModelRegistry, ModelVersion

Mode = Literal["gate", "force", "candidate", "none"]
MODES: tuple[str, ...] = get_args(Mode)
# The lifecycle actions that say what became of a newly registered version.
_OUTCOMES = ("registered", "promoted", "refused", "candidate_set")


@dataclass(frozen=True)
class Release:
    mode: Mode = "gate"
    actor: Optional[str] = None  # None: the user running the command
    reason: str = ""

    @classmethod
    def of(cls, promote: Union[bool, str, "Release"]) -> "Release":
        """The trainers' `promote=` argument: a bool (older callers), a mode, or a Release."""
        if isinstance(promote, Release):
            return promote
        if isinstance(promote, bool):
            return cls("gate" if promote else "none")
        if promote in MODES:
            return cls(promote)  # type: ignore[arg-type]
        raise ValueError(f"promote must be a bool, one of {', '.join(MODES)} or a Release, not {promote!r}")

    def apply(self, registry: ModelRegistry, name: str, version: str) -> None:
        """Act on the registered `version`; what happened is in the registry history (see
        `describe`)."""
        if self.mode == "none":
            return
        current = registry.current(name)
        if self.mode == "candidate" and current is not None and current.version != version:
            registry.set_candidate(name, version, actor=self.actor, reason=self.reason)
            return
        # "candidate" without another current version to shadow: it is the first, served as such.
        promote_with_gate(registry, name, version, actor=self.actor, reason=self.reason, force=self.mode == "force")


def gate_metrics(name: str, document: Mapping[str, Any]) -> dict[str, float]:
    """The gate's offline metrics of `name` found in a document shaped like a version's
    manifest plus report (each rule's dotted path), under the gate's keys."""
    found = {rule.key: metric_value(document, rule) for rule in GATES[name].offline}
    return {key: value for key, value in found.items() if value is not None}


# What evaluating an existing version on a new run's data may raise: a version the data cannot
# be fed to (other features, horizon, missing weights) is not comparable, not a failed training.
NOT_COMPARABLE = (KeyError, ValueError, RuntimeError, OSError, IndexError)


def comparison(
    current: ModelVersion,
    candidate: Mapping[str, float],
    evaluate_current: Callable[[ModelVersion], Mapping[str, float]],
    data: str,
) -> dict[str, Any]:
    """The manifest's "comparison" (stream_app.lifecycle.promotion): the new version's metrics
    and the current version's, evaluated by `evaluate_current` on the same held-out `data`.
    When the current version cannot be evaluated on it (trained on another feature set, its
    weights missing), the reason is kept instead of its metrics; the gate then has nothing to
    hold against the new version and does not refuse for want of them."""
    try:
        measured: dict[str, Any] = dict(evaluate_current(current))
    except NOT_COMPARABLE as exc:
        measured = {"error": f"{current.version} could not be evaluated on this data: {exc}"}
    return {"data": data, "candidate": dict(candidate), "current": {"version": current.version, **measured}}


def describe(registry: ModelRegistry, name: str, version: str) -> str:
    """One or a few lines on what became of a newly registered version, from the history."""
    entry = _last_outcome(registry.history(name), version)
    current = registry.current(name)
    serving = current.version if current is not None else None
    if entry is None or entry.action == "registered":
        return f"{name} {version} registered, not promoted ({serving} stays current)"
    if entry.action == "candidate_set":
        return (f"{name} {version} is the candidate: workers score it in shadow next to {serving}.\n"
                f"  Promote it with: stream-app models promote {name} {version}")
    if entry.action == "promoted":
        forced = " (forced)" if entry.forced else ""
        return f"{name} {version} promoted{forced}: {entry.reason or 'no reason recorded'}"
    return (f"{name} {version} registered but not promoted; {serving} stays current. The gate refused "
            f"({version}'s figure first, then {entry.previous or serving}'s): {entry.reason}\n"
            f"  To serve {version} anyway: {override(name, version)}")


def _last_outcome(history: list[HistoryEntry], version: str) -> Optional[HistoryEntry]:
    return next((e for e in reversed(history) if e.version == version and e.action in _OUTCOMES), None)
