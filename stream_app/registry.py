"""Versioned model store: a plain directory per version with a manifest, readable without
this code (`model_store/<name>/<version>/manifest.json`, weights, report), and a `CURRENT`
file naming the version workers serve.

    model_store/maintenance/
        CURRENT                 -> "v3"
        v3/manifest.json        name, version, created_at, hyperparameters, features, metrics,
                                data fingerprint, anything the scorer needs to rebuild the model
        v3/model.pt             torch state_dict
        v3/report.md, report.json   evaluation against baselines

A version directory is written under a temporary name and renamed into place when complete,
so a worker never loads a half-written model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

_VERSION_RE = re.compile(r"^v(\d+)$")
MANIFEST = "manifest.json"
CURRENT = "CURRENT"


class ModelNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name


class ModelRegistry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _dir(self, name: str) -> Path:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise ValueError(f"model name {name!r} must be lower-case letters, digits, - or _")
        return self.root / name

    def versions(self, name: str) -> list[ModelVersion]:
        base = self._dir(name)
        if not base.is_dir():
            return []
        found = []
        for child in base.iterdir():
            match = _VERSION_RE.match(child.name)
            if match and (child / MANIFEST).is_file():
                found.append((int(match.group(1)), child))
        return [self._load(name, path) for _, path in sorted(found)]

    def get(self, name: str, version: str) -> ModelVersion:
        path = self._dir(name) / version
        if not (path / MANIFEST).is_file():
            raise ModelNotFound(f"no model {name} {version} in {self.root}")
        return self._load(name, path)

    def current(self, name: str) -> ModelVersion | None:
        """The version workers should serve, or None when none was ever trained."""
        pointer = self._dir(name) / CURRENT
        if pointer.is_file():
            return self.get(name, pointer.read_text().strip())
        versions = self.versions(name)
        return versions[-1] if versions else None

    def promote(self, name: str, version: str) -> ModelVersion:
        chosen = self.get(name, version)
        pointer = self._dir(name) / CURRENT
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(version + "\n")
        os.replace(tmp, pointer)
        return chosen

    @contextmanager
    def new_version(self, name: str, manifest: dict[str, Any], promote: bool = True) -> Iterator[Path]:
        """Yield a staging directory to write files into; on normal exit the manifest is written
        and the directory renamed to the next version (and promoted unless told not to)."""
        base = self._dir(name)
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
        try:
            yield staging
            existing = [int(m.group(1)) for c in base.iterdir() if (m := _VERSION_RE.match(c.name))]
            version = f"v{max(existing, default=0) + 1}"
            full = {
                **manifest,
                "name": name,
                "version": version,
                "created_at": datetime.now(timezone.utc).isoformat(),
            }
            (staging / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
            os.rename(staging, base / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if promote:
            self.promote(name, version)

    @staticmethod
    def _load(name: str, path: Path) -> ModelVersion:
        manifest = json.loads((path / MANIFEST).read_text())
        return ModelVersion(name=name, version=path.name, path=path, manifest=manifest)
