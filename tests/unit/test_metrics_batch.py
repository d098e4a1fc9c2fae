"""A batch's values counted at once land in the same buckets as observed one by one."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from stream_app.metrics import observe_many


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for m in histogram.collect() for s in m.samples
            if not s.name.endswith("_created")}


def test_observe_many_matches_observing_each_value() -> None:
    registry = CollectorRegistry()
    buckets = (0.1, 0.5, 0.9, 1.0)
    one = Histogram("one_by_one", "", ["stream"], buckets=buckets, registry=registry).labels("s")
    many = Histogram("at_once", "", ["stream"], buckets=buckets, registry=registry).labels("s")
    values = np.random.default_rng(0).uniform(0.0, 1.2, 500).tolist() + [0.1, 0.5, 1.0, 0.0]  # on the bounds too
    for v in values:
        one.observe(v)
    observe_many(many, values[:300])
    observe_many(many, values[300:])
    observe_many(many, [])
    got = {(name.replace("at_once", "one_by_one"), le): v for (name, le), v in _samples(many).items()}
    want = _samples(one)
    assert got.pop(("one_by_one_sum", "")) == pytest.approx(want.pop(("one_by_one_sum", "")), rel=1e-12)
    assert got == want
    assert _samples(one)[("one_by_one_count", "")] == len(values)
