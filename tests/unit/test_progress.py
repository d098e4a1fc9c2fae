"""Progress bars: drawn on a terminal, silent in logs and pipes, the same for every long job."""

from __future__ import annotations

import pytest

from stream_app import progress


def test_off_a_terminal_nothing_is_written(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("STREAM_APP_PROGRESS", raising=False)
    # capsys replaces stderr with a capture, which is not a terminal
    with progress.bar("training", total=3, unit="epoch") as shown:
        shown.update(3)
    with progress.Steps("supply chain", 2) as step:
        step("graph")
        step("models")
    progress.note("found 3 lots")
    assert capsys.readouterr().err == ""


def test_forced_on_the_bar_counts_and_the_steps_name_the_current_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_APP_PROGRESS", "1")
    with progress.bar("training", total=4, unit="epoch") as shown:
        shown.update(4)
    err = capsys.readouterr().err
    assert "training" in err and "4/4" in err

    steps = progress.Steps("supply chain", 3)
    steps("graph")
    steps("embeddings")
    assert steps._bar.n == 1 and "embeddings" in capsys.readouterr().err
    progress.note("GNN held-out AUC 0.97")
    assert "GNN held-out AUC 0.97" in capsys.readouterr().err
    steps.close()
    assert steps._bar.n == 2  # the step that was running is done; "models" never ran


def test_a_terminal_can_be_told_to_stay_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    monkeypatch.delenv("STREAM_APP_PROGRESS", raising=False)
    assert progress.enabled()
    monkeypatch.setenv("STREAM_APP_PROGRESS", "0")
    assert not progress.enabled()
