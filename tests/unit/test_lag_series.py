"""The worker's consumer-lag series follow its assignment: a revoked partition's series goes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from stream_app.metrics import LagSeries


def series(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for metric in registry.collect() for s in metric.samples
    }


def make() -> tuple[LagSeries, CollectorRegistry]:
    registry = CollectorRegistry()
    return LagSeries(Gauge("lag", "lag", ["topic", "partition"], registry=registry)), registry


def test_a_revoked_partition_loses_its_series_and_the_rest_keep_theirs() -> None:
    lag, registry = make()
    held = {("readings", 0), ("readings", 1), ("sales", 0)}
    lag.update({("readings", 0): 5, ("readings", 1): 7, ("sales", 0): 0}, held)
    assert series(registry) == {("readings", "0"): 5.0, ("readings", "1"): 7.0, ("sales", "0"): 0.0}

    lag.drop({("readings", 1), ("other", 3)})  # the revocation callback; "other" was never shown
    assert series(registry) == {("readings", "0"): 5.0, ("sales", "0"): 0.0}


def test_a_beat_drops_series_outside_the_assignment_it_reads_last() -> None:
    lag, registry = make()
    lag.update({("readings", 0): 5, ("readings", 1): 7}, {("readings", 0), ("readings", 1)})
    # A beat whose positions were read before partition 1 was revoked: it must not come back.
    lag.update({("readings", 0): 3, ("readings", 1): 9}, {("readings", 0)})
    assert series(registry) == {("readings", "0"): 3.0}
    lag.update({}, set())
    assert series(registry) == {}
