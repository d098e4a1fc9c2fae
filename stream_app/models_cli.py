"""`stream-app models ...`: list, inspect, promote (through the gate), roll back, set the
shadow candidate, and read the lifecycle history of model versions in the model store.
Exit status 0 when done, 1 when refused or not found (one line on stderr)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from typing import Any, Callable, Optional

from stream_app.lifecycle.live import read_live
from stream_app.lifecycle.promotion import own_metrics, promote_with_gate
from stream_app.registry import CurrentChanged, ModelNotFound, ModelRegistry, ModelVersion, NoRollbackTarget
from stream_app.settings import Settings

_HEX_DIGEST = re.compile(r"^[0-9a-f]{40,}$")


class _Refused(Exception):
    """A lifecycle action that was declined; the message is the one line shown."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)

    p = sub.add_parser("list", help="versions with their status and key metrics")
    p.add_argument("name", nargs="?", help="one model (default: all)")
    p.set_defaults(models_func=_list)

    p = sub.add_parser("show", help="a version's manifest summary (default: the current version)")
    p.add_argument("name")
    p.add_argument("version", nargs="?")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(models_func=_show)

    p = sub.add_parser("promote", help="make a version current, if the promotion gate allows it")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="promote even when the gate refuses (recorded)")
    p.add_argument("--reason", default="", help="why, for the history")
    p.set_defaults(models_func=_promote)

    p = sub.add_parser("rollback", help="serve again the version that was current before")
    p.add_argument("name")
    p.add_argument("--reason", default="", help="why, for the history")
    p.set_defaults(models_func=_rollback)

    p = sub.add_parser("candidate", help="show, set or clear the version workers score in shadow")
    p.add_argument("name")
    p.add_argument("version", nargs="?")
    p.add_argument("--clear", action="store_true")
    p.add_argument("--share", type=float, default=0.0,
                   help="A/B: the candidate also serves this share of entities (0-0.5, by a stable hash of their id)")
    p.add_argument("--reason", default="", help="why, for the history")
    p.set_defaults(models_func=_candidate)

    p = sub.add_parser("history", help="the lifecycle actions on a model, oldest first")
    p.add_argument("name")
    p.set_defaults(models_func=_history)


def run(args: argparse.Namespace, settings: Settings) -> int:
    registry = ModelRegistry(settings.model_dir)
    func: Callable[[ModelRegistry, argparse.Namespace], None] = args.models_func
    try:
        func(registry, args)
    except (_Refused, ModelNotFound, NoRollbackTarget, CurrentChanged, ValueError) as exc:
        print(f"stream-app models {args.models_command}: {exc}", file=sys.stderr)
        return 1
    return 0


# -- commands ------------------------------------------------------------------------------


def _list(registry: ModelRegistry, args: argparse.Namespace) -> None:
    names = [args.name] if args.name else registry.names()
    rows = []
    for name in names:
        for v in registry.versions(name):
            metrics = " ".join(f"{k}={_num(x)}" for k, x in own_metrics(v).items())
            rows.append((name, v.version, _minute(v.manifest.get("created_at")), ",".join(_marks(registry, v)) or "-", metrics))
    if not rows:
        raise _Refused(f"no model versions in {registry.root}" + (f" for {args.name}" if args.name else ""))
    print(_table(("MODEL", "VERSION", "CREATED", "STATUS", "KEY METRICS"), rows))


def _show(registry: ModelRegistry, args: argparse.Namespace) -> None:
    version = registry.get(args.name, args.version) if args.version else registry.current(args.name)
    if version is None:
        raise _Refused(f"no versions of {args.name} in {registry.root}")
    summary = _summary(registry, version)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
    status = f" ({', '.join(summary['status'])})" if summary["status"] else ""
    print(f"{version.name} {version.version}{status}")
    fields = [
        ("created", summary["created_at"]),
        ("kind", summary["kind"]),
        ("run", summary["run_id"]),
        ("path", summary["path"]),
        ("report", summary["report"]),
        ("data", _brief(summary["data_fingerprint"])),
        ("features", _brief(summary["features"])),
        ("hyperparameters" if summary["hyperparameters"] else "train config",
         _brief(summary["hyperparameters"] or summary["train_config"])),
        ("key metrics", _brief(summary["key_metrics"])),
        ("comparison", _brief_comparison(summary["comparison"])),
        ("live", _brief(summary["live"])),
    ]
    for label, value in fields:
        print(f"  {label:<16} {value if value not in (None, '') else 'none'}")


def _promote(registry: ModelRegistry, args: argparse.Namespace) -> None:
    before = registry.pointer_state(args.name).current
    decision = promote_with_gate(registry, args.name, args.version, reason=args.reason, force=args.force)
    verdict = "; ".join(decision.reasons)
    if not decision.allowed and not args.force:
        raise _Refused(f"refused: {args.name} {args.version} may not replace {before}: {verdict}")
    forced = "" if decision.allowed else f"; forced past the gate ({verdict})"
    print(f"{args.name} {args.version} is now current (was {before or 'none'}){forced}")


def _rollback(registry: ModelRegistry, args: argparse.Namespace) -> None:
    before = registry.pointer_state(args.name).current
    restored = registry.rollback(args.name, reason=args.reason)
    print(f"{args.name} {restored.version} is current again (was {before})")


def _candidate(registry: ModelRegistry, args: argparse.Namespace) -> None:
    if args.clear and args.version:
        raise ValueError("give a VERSION or --clear, not both")
    if args.clear:
        cleared = registry.clear_candidate(args.name, reason=args.reason)
        print(f"{args.name}: candidate {cleared} cleared" if cleared else f"{args.name} has no candidate")
    elif args.version:
        registry.set_candidate(args.name, args.version, share=args.share, reason=args.reason)
        serves = f" and it serves {args.share:.0%} of entities" if args.share else ""
        print(f"{args.name} {args.version} is the candidate: workers score it in shadow{serves}")
    else:
        state = registry.pointer_state(args.name)
        share = f" (serves {state.candidate_share:.0%} of entities)" if state.candidate_share else ""
        print(f"{args.name} candidate: {state.candidate or 'none'}{share}")


def _history(registry: ModelRegistry, args: argparse.Namespace) -> None:
    entries = registry.history(args.name)
    if not entries:
        raise _Refused(f"no history for {args.name} in {registry.root}")
    rows = [
        (e.time, e.action + (" (forced)" if e.forced else ""), e.version or "-",
         f"was {e.previous}" if e.previous else "", e.actor, e.reason)
        for e in entries
    ]
    print(_table(("TIME", "ACTION", "VERSION", "BEFORE", "ACTOR", "REASON"), rows))


# -- formatting ----------------------------------------------------------------------------


def _summary(registry: ModelRegistry, version: ModelVersion) -> dict[str, Any]:
    m = version.manifest
    live = read_live(registry, version.name, version.version)
    return {
        "name": version.name,
        "version": version.version,
        "status": _marks(registry, version),
        "created_at": m.get("created_at"),
        "kind": m.get("kind"),
        "run_id": m.get("run_id"),
        "path": str(version.path),
        "report": str(version.file("report.md")) if version.file("report.md").is_file() else None,
        "data_fingerprint": m.get("data_fingerprint"),
        "features": m.get("features"),
        "hyperparameters": m.get("hyperparameters"),
        "train_config": m.get("train_config"),
        "key_metrics": own_metrics(version),
        "metrics": m.get("metrics"),
        "comparison": m.get("comparison"),
        "live": asdict(live) if live else None,
    }


def _marks(registry: ModelRegistry, version: ModelVersion) -> list[str]:
    state = registry.pointer_state(version.name)
    return [mark for mark, pointer in zip(state._fields, state) if pointer == version.version]


def _brief_comparison(comparison: Optional[dict[str, Any]]) -> str:
    if not comparison:
        return ""
    current = dict(comparison.get("current") or {})
    against = current.pop("version", "?")
    data = comparison.get("data") or "unstated data"
    return f"against {against} on {data}: candidate {_brief(comparison.get('candidate'))}; current {_brief(current)}"


def _brief(value: Any, nested: bool = False) -> str:
    """One line for a manifest value: names shown, numeric arrays and nested tables by their
    size, digests shortened."""
    if isinstance(value, dict):
        if nested:
            return f"{{{len(value)} entries}}"
        return " ".join(f"{k}={_brief(v, True)}" for k, v in value.items() if v not in (None, {}, []))
    if isinstance(value, list):
        if len(value) <= 8 and all(isinstance(x, str) for x in value):
            return "[" + ",".join(value) + "]"
        return f"[{len(value)} values]"
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, str) and _HEX_DIGEST.match(value):
        return value[:12] + "…"
    return "" if value is None else str(value)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _minute(iso: Optional[str]) -> str:
    return iso[:16].replace("T", " ") if iso else "-"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows))
