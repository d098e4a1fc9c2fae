from __future__ import annotations

import pickle

import numpy as np
import pytest

from agents.drift import DriftTracker
from stream_app.intake import RawMessage
from schemas import DriftEvent
from stream_app.drift import MAX_FEATURES, DriftConfig, DriftMonitor
from stream_app.drift_snapshot import ForgedSnapshot
from stream_app.settings import DriftSettings

CONFIG = DriftConfig(reference_size=500)


def feed(monitor: DriftMonitor, values: np.ndarray, name: str = "x", chunk: int = 50) -> list[DriftEvent]:
    out = []
    for i in range(0, len(values), chunk):
        out += monitor.observe({name: values[i : i + chunk].tolist()})
    return out


def test_stationary_values_raise_nothing() -> None:
    rng = np.random.default_rng(0)
    for seed in range(3):
        monitor = DriftMonitor("s", 0, CONFIG, kswin_features=["x"])
        assert feed(monitor, np.random.default_rng(seed).normal(5, 1, 20_000)) == []


def test_a_shift_is_reported_once_with_its_size() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(5, 1, 3000), rng.normal(7, 1, 6000)])
    found = feed(DriftMonitor("s", 2, CONFIG), values)
    adwin = [e for e in found if e.detector == "adwin"]
    assert len(adwin) == 1, "one lasting change, one report"
    event = adwin[0]
    assert 3000 < event.values_seen < 3400, "detected soon after the change"
    assert event.mean_before == pytest.approx(5, abs=0.3) and event.mean_after > 6.3
    assert event.effect == pytest.approx(2, abs=0.6) and event.partition == 2 and event.stream == "s"


def test_small_shifts_below_the_effect_floor_are_not_reported() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.normal(5, 1, 3000), rng.normal(5.4, 1, 6000)])
    assert feed(DriftMonitor("s", 0, CONFIG), values) == []


def test_kswin_sees_a_change_of_shape_on_outputs() -> None:
    rng = np.random.default_rng(3)
    # Same mean, the spread collapses then a second mode appears: a distribution test's case.
    values = np.concatenate([rng.normal(0.5, 0.05, 4000), np.where(rng.random(8000) < 0.5, 0.1, 0.9)])
    found = feed(DriftMonitor("s", 0, DriftConfig(reference_size=500, kswin_every=5), kswin_features=["x"]), values)
    assert [e.detector for e in found] == ["kswin"], "the mean did not move: only the distribution test sees it"


def test_snapshot_round_trip_keeps_the_reference() -> None:
    rng = np.random.default_rng(4)
    monitor = DriftMonitor("s", 1, CONFIG)
    feed(monitor, rng.normal(5, 1, 2000))
    restored = DriftMonitor.loads(monitor.dumps())
    assert restored.features["x"].reference.n == 500
    assert feed(restored, rng.normal(8, 1, 2000)), "the restored monitor still knows the old normal"
    with pytest.raises(ForgedSnapshot):
        DriftMonitor.loads(pickle.dumps({"not": "a monitor"}))


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("a snapshot ran code",))


def test_a_forged_snapshot_cannot_run_code(capsys: pytest.CaptureFixture[str]) -> None:
    """Snapshots are read back from Kafka topics: they are JSON data; a pickle is refused unread."""
    with pytest.raises(ForgedSnapshot):
        DriftMonitor.loads(pickle.dumps(_RunsCode()))
    assert "ran code" not in capsys.readouterr().out


def test_feature_count_is_bounded() -> None:
    monitor = DriftMonitor("s", 0, CONFIG)
    monitor.observe({f"f{i}": [1.0] for i in range(MAX_FEATURES + 10)})
    assert len(monitor.features) == MAX_FEATURES


def test_tracker_keeps_one_monitor_per_partition_and_ignores_configured_features() -> None:
    tracker = DriftTracker("s", DriftSettings(reference_size=50, ignore_features=["ambient"]),
                           lambda events, results: {"x": list(events), "ambient": list(events)})
    origin = [RawMessage("t", i % 2, i, None, b"") for i in range(10)]
    tracker.ensure({0, 1})
    tracker.observe(list(range(10)), list(range(10)), origin)
    assert set(tracker.monitors) == {0, 1}
    assert set(tracker.monitors[0].features) == {"x"}
    assert tracker.monitors[0].features["x"].seen == 5


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        DriftConfig(adwin_delta=0)


def test_the_window_test_gives_scipys_statistic_and_p_value() -> None:
    from scipy import stats

    from stream_app.drift import ks_two_sample

    rng = np.random.default_rng(5)
    for _ in range(300):
        a, b = rng.normal(0, 1, 50), rng.normal(rng.uniform(0, 1.5), rng.uniform(0.5, 2), 50)
        if rng.random() < 0.3:  # ties, as rounded model outputs have
            a, b = np.round(a, 1), np.round(b, 1)
        expected = stats.ks_2samp(a, b, method="auto")
        statistic, p_value = ks_two_sample(a.tolist(), b.tolist())
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
