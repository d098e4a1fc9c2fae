"""Model-store helpers shared by tests that switch versions under a worker."""

from __future__ import annotations

import shutil

from stream_app.registry import ModelRegistry


def register_copy(registry: ModelRegistry, name: str) -> str:
    """Register the current version's artifact again as a new, unpromoted version (outputs tell
    the two apart only by the version they name); returns the new version."""
    current = registry.current(name)
    assert current is not None
    manifest = {k: v for k, v in current.manifest.items() if k not in ("name", "version", "created_at")}
    with registry.new_version(name, manifest, promote=False, actor="test") as staging:
        for f in current.path.iterdir():
            if f.name != "manifest.json":
                shutil.copy(f, staging / f.name)
    return registry.versions(name)[-1].version
