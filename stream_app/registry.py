"""Versioned model store: a plain directory per version with a manifest, readable without
this code (`model_store/<name>/<version>/manifest.json`, weights, report), pointer files naming
the version workers serve and the one they shadow, and an append-only lifecycle log.

    model_store/maintenance/
        CURRENT                 -> "v3"   the version workers serve
        CANDIDATE               -> "v4"   (optional) the version workers score in shadow, or
                                   "v4 share=0.1": and that serves 10 % of entities (A/B)
        HISTORY.jsonl           one JSON line per lifecycle action: registered, promoted,
                                rolled_back, refused, candidate_set, candidate_cleared
        v3/manifest.json        name, version, created_at, hyperparameters, features, metrics,
                                data fingerprint, anything the scorer needs to rebuild the model
        v3/model.pt             torch state_dict
        v3/report.md, report.json   evaluation against baselines
        live/v3.json            live accuracy counters written by workers (stream_app.lifecycle.live)

A version directory is written under a temporary name and renamed into place when complete,
and pointers are replaced whole, so a worker never loads a half-written model or pointer.
Pointer changes and their history line happen under a per-model lock (flock), so the
`previous` version recorded is the one actually replaced.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional

_VERSION_RE = re.compile(r"^v(\d+)$")
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
CANDIDATE = "CANDIDATE"
HISTORY = "HISTORY.jsonl"
_LOCK = ".lock"


class ModelNotFound(LookupError):
    pass


class NoRollbackTarget(LookupError):
    pass


class CurrentChanged(RuntimeError):
    """The current version is no longer the one a decision was made against."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name


@dataclass(frozen=True)
class HistoryEntry:
    time: str  # UTC, ISO 8601
    action: str  # registered | promoted | rolled_back | refused | candidate_set | candidate_cleared
    version: Optional[str]
    previous: Optional[str]  # the version the pointer named before (CURRENT, or CANDIDATE)
    actor: str
    reason: str = ""
    comparison: Optional[dict[str, Any]] = None  # the gate's comparison (promotions, refusals)
    forced: bool = False  # promoted although the gate refused


class PointerState(NamedTuple):
    """What workers should serve and shadow; compare with the last seen value to notice a change."""

    current: Optional[str]
    candidate: Optional[str]
    # The share of entities the candidate serves instead of the current version (A/B); 0: shadow only.
    candidate_share: float = 0.0


MAX_CANDIDATE_SHARE = 0.5  # more is a promotion, and goes through the gate


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ModelRegistry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def directory(self, name: str) -> Path:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise ValueError(f"model name {name!r} must be lower-case letters, digits, - or _")
        return self.root / name

    def names(self) -> list[str]:
        """Models with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if re.fullmatch(r"[a-z][a-z0-9_-]*", p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[ModelVersion]:
        base = self.directory(name)
        if not base.is_dir():
            return []
        found = []
        for child in base.iterdir():
            match = _VERSION_RE.match(child.name)
            if match and (child / MANIFEST).is_file():
                found.append((int(match.group(1)), child))
        return [self._load(name, path) for _, path in sorted(found)]

    def get(self, name: str, version: str) -> ModelVersion:
        path = self.directory(name) / version
        if not _VERSION_RE.match(version) or not (path / MANIFEST).is_file():
            raise ModelNotFound(f"no model {name} {version} in {self.root}")
        return self._load(name, path)

    def current(self, name: str) -> ModelVersion | None:
        """The version workers should serve, or None when none was ever trained."""
        version = self.pointer_state(name).current
        return self.get(name, version) if version else None

    def candidate(self, name: str) -> ModelVersion | None:
        """The version workers should score in shadow next to the current one, if any."""
        version = self._read_candidate(name)[0]
        return self.get(name, version) if version else None

    def pointer_state(self, name: str) -> PointerState:
        """Two small file reads: cheap enough for workers to poll. Only a store without a CURRENT
        file (never promoted) needs a directory scan: its newest version is served."""
        current = self._read_pointer(name, CURRENT)
        if current is None:
            versions = self.versions(name)
            current = versions[-1].version if versions else None
        return PointerState(current, *self._read_candidate(name))

    # -- lifecycle ---------------------------------------------------------------------------

    def promote(
        self,
        name: str,
        version: str,
        *,
        actor: Optional[str] = None,
        reason: str = "",
        comparison: Optional[dict[str, Any]] = None,
        forced: bool = False,
        if_current: Optional[str] = None,
    ) -> ModelVersion:
        """Make `version` the one workers serve. `if_current`: refuse (CurrentChanged) unless the
        current version is still the one a gate decision compared against. Promoting the
        candidate clears the CANDIDATE pointer."""
        chosen = self.get(name, version)
        with self._locked(name):
            effective = self.pointer_state(name).current
            if if_current is not None and effective != if_current:
                raise CurrentChanged(f"{name} current is now {effective}, not {if_current}; decide again")
            previous = self._read_pointer(name, CURRENT)  # none before the first promotion
            self._write_pointer(name, CURRENT, version)
            self._record(name, "promoted", version, previous, actor, reason, comparison, forced)
            if self._read_candidate(name)[0] == version:
                self._clear_candidate_locked(name, actor, "promoted")
        return chosen

    def rollback(self, name: str, *, actor: Optional[str] = None, reason: str = "") -> ModelVersion:
        """Serve again the version that was current before the current one. Repeated rollbacks
        walk further back (v3 -> v2 -> v1), as the history records each step."""
        with self._locked(name):
            current = self.pointer_state(name).current
            if current is None:
                raise NoRollbackTarget(f"{name} has no current version")
            stack = serving_stack(self.history(name))
            if not stack or stack[-1] != current:
                raise NoRollbackTarget(
                    f"the history of {name} does not say how {current} became current; promote the wanted version instead"
                )
            if len(stack) < 2:
                raise NoRollbackTarget(f"no version of {name} was current before {current}")
            target = self.get(name, stack[-2])
            self._write_pointer(name, CURRENT, target.version)
            self._record(name, "rolled_back", target.version, current, actor, reason)
        return target

    def set_candidate(
        self, name: str, version: str, *, share: float = 0.0, actor: Optional[str] = None, reason: str = ""
    ) -> ModelVersion:
        """Score `version` in shadow beside the current one; with `share` > 0 it also serves that
        share of entities (chosen by a stable hash of their id), the current version shadowing
        it there."""
        if not 0.0 <= share <= MAX_CANDIDATE_SHARE:
            raise ValueError(f"a candidate's share must be between 0 and {MAX_CANDIDATE_SHARE}; "
                             "serving more is a promotion (stream-app models promote)")
        chosen = self.get(name, version)
        with self._locked(name):
            if self.pointer_state(name).current == version:
                raise ValueError(f"{name} {version} is already current")
            previous = self._read_candidate(name)[0]
            self._write_pointer(name, CANDIDATE, f"{version} share={share:g}" if share else version)
            why = f"serves {share:.0%} of entities (A/B)" + (f"; {reason}" if reason else "") if share else reason
            self._record(name, "candidate_set", version, previous, actor, why)
        return chosen

    def clear_candidate(self, name: str, *, actor: Optional[str] = None, reason: str = "") -> Optional[str]:
        """Stop shadow scoring; returns the version that was the candidate (None: there was none)."""
        with self._locked(name):
            return self._clear_candidate_locked(name, actor, reason)

    def record_refusal(
        self,
        name: str,
        version: str,
        *,
        actor: Optional[str] = None,
        reason: str = "",
        comparison: Optional[dict[str, Any]] = None,
    ) -> None:
        self._record(name, "refused", version, self.pointer_state(name).current, actor, reason, comparison)

    def history(self, name: str) -> list[HistoryEntry]:
        path = self.directory(name) / HISTORY
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(HistoryEntry(**json.loads(line)))
            except (ValueError, TypeError):  # a line torn by a crash mid-write, or hand-edited
                continue
        return entries

    @contextmanager
    def new_version(
        self,
        name: str,
        manifest: dict[str, Any],
        promote: bool = True,
        *,
        actor: Optional[str] = None,
        reason: str = "",
    ) -> Iterator[Path]:
        """Yield a staging directory to write files into; on normal exit the manifest is written
        and the directory renamed to the next version (and promoted unless told not to)."""
        base = self.directory(name)
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
        try:
            yield staging
            with self._locked(name):  # two trainers must not pick the same number
                existing = [int(m.group(1)) for c in base.iterdir() if (m := _VERSION_RE.match(c.name))]
                version = f"v{max(existing, default=0) + 1}"
                full = {**manifest, "name": name, "version": version, "created_at": _now()}
                (staging / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
                os.rename(staging, base / version)
                self._record(name, "registered", version, None, actor, reason)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if promote:
            self.promote(name, version, actor=actor, reason=reason)

    # -- files -------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        base = self.directory(name)
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read_pointer(self, name: str, pointer: str) -> Optional[str]:
        try:
            return (self.directory(name) / pointer).read_text().strip() or None
        except FileNotFoundError:
            return None

    def _read_candidate(self, name: str) -> tuple[Optional[str], float]:
        text = self._read_pointer(name, CANDIDATE)
        if text is None:
            return None, 0.0
        version, _, rest = text.partition(" ")
        share = 0.0
        if rest.startswith("share="):
            try:
                share = min(max(float(rest[len("share="):]), 0.0), MAX_CANDIDATE_SHARE)
            except ValueError:  # hand-edited: shadow only, never a wrong share
                share = 0.0
        return version, share

    def _write_pointer(self, name: str, pointer: str, version: str) -> None:
        base = self.directory(name)
        fd, tmp = tempfile.mkstemp(prefix=f".{pointer}-", dir=base)
        with os.fdopen(fd, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, base / pointer)

    def _clear_candidate_locked(self, name: str, actor: Optional[str], reason: str) -> Optional[str]:
        previous = self._read_candidate(name)[0]
        if previous is None:
            return None
        (self.directory(name) / CANDIDATE).unlink(missing_ok=True)
        self._record(name, "candidate_cleared", None, previous, actor, reason)
        return previous

    def _record(
        self,
        name: str,
        action: str,
        version: Optional[str],
        previous: Optional[str],
        actor: Optional[str],
        reason: str,
        comparison: Optional[dict[str, Any]] = None,
        forced: bool = False,
    ) -> None:
        entry = HistoryEntry(_now(), action, version, previous, actor or default_actor(), reason, comparison, forced)
        append_line(self.directory(name) / HISTORY, json.dumps(asdict(entry), sort_keys=True))

    @staticmethod
    def _load(name: str, path: Path) -> ModelVersion:
        manifest = json.loads((path / MANIFEST).read_text())
        return ModelVersion(name=name, version=path.name, path=path, manifest=manifest)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write on an O_APPEND descriptor: the kernel places each
    write at the end of the file as a whole, so concurrent writers (threads, processes) never
    interleave inside a line."""
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(f"short write to {path}")
    finally:
        os.close(fd)


def serving_stack(history: list[HistoryEntry]) -> list[str]:
    """Replay the history into the versions served so far, oldest first, the current one last;
    a rollback pops back to its target. A store whose first recorded promotion replaced a version
    (made current before the history existed) starts with that version."""
    stack: list[str] = []
    for entry in history:
        if entry.version is None:
            continue
        if entry.action == "promoted":
            if not stack and entry.previous:
                stack.append(entry.previous)
            if not stack or stack[-1] != entry.version:
                stack.append(entry.version)
        elif entry.action == "rolled_back":
            while stack and stack[-1] != entry.version:
                stack.pop()
            if not stack:
                stack.append(entry.version)
    return stack
