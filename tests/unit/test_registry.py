from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.registry import ModelNotFound, ModelRegistry


def test_versions_count_up_and_the_newest_is_promoted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.current("maintenance") is None
    for i in range(2):
        with registry.new_version("maintenance", {"metrics": {"auc": i}}) as staging:
            (staging / "model.pt").write_bytes(b"w%d" % i)
    versions = registry.versions("maintenance")
    assert [v.version for v in versions] == ["v1", "v2"]
    current = registry.current("maintenance")
    assert current is not None and current.version == "v2"
    assert current.manifest["metrics"] == {"auc": 1} and current.manifest["name"] == "maintenance"
    assert current.file("model.pt").read_bytes() == b"w1"


def test_promote_and_unpromoted_versions(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with registry.new_version("maintenance", {}):
        pass
    with registry.new_version("maintenance", {}, promote=False):
        pass
    assert registry.current("maintenance").version == "v1"
    registry.promote("maintenance", "v2")
    assert registry.current("maintenance").version == "v2"
    with pytest.raises(ModelNotFound):
        registry.promote("maintenance", "v9")


def test_a_failed_write_leaves_no_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(RuntimeError):
        with registry.new_version("maintenance", {}) as staging:
            (staging / "model.pt").write_bytes(b"half")
            raise RuntimeError("disk full")
    assert registry.versions("maintenance") == []
    assert list((tmp_path / "maintenance").iterdir()) == []


def test_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ModelRegistry(tmp_path).versions("../etc")
