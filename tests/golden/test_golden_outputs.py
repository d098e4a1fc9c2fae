"""The product's outputs for a fixed input on fixed models are the golden ones: the same ids per
output topic, the same decisions, figures within float tolerance (tests/golden/compare.py).
A guard for changes to the stream path that must not change what it publishes. When outputs
change on purpose, recapture them (`python -m tests.golden.capture`) and say why in the commit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from schemas import SensorReading, SupplyChainTransaction
from tests.golden import harness
from tests.golden.compare import ABS, REL, compare, normalize, read_expected, repeats_that_differ
from tests.golden.thresholds import on_threshold

SHOWN = 40  # differences listed in a failure; the count says how many there were
# When outputs differ, the golden ids never all arrive: the run ends once nothing came for this
# long after the first output (the worker's longest pause here, handing over its partitions at
# start, is ~4 s).
QUIET_S = 15.0


@pytest.fixture(scope="module")
def golden() -> harness.Outputs:
    return read_expected(harness.EXPECTED)


@pytest.mark.integration
@pytest.mark.slow
def test_the_fixed_input_gives_the_golden_outputs(broker, start_worker, tmp_path: Path, golden: harness.Outputs) -> None:
    done = harness.either(harness.expected_outputs_present(golden), harness.quiet_for(QUIET_S, lambda r: any(r.messages.values())))
    raw = harness.run(broker.bootstrap, start_worker, tmp_path, done)
    assert not repeats_that_differ(raw), repeats_that_differ(raw)[:SHOWN]
    differences = compare(golden, normalize(raw), excused=on_threshold(golden, harness.MODELS, REL, ABS))
    per_topic = Counter(d.split(" ")[0].rstrip(":") for d in differences)
    assert not differences, (f"{len(differences)} differences from the golden outputs {dict(per_topic)}:\n"
                             + "\n".join(differences[:SHOWN]))


def test_the_golden_outputs_answer_the_whole_input(golden: harness.Outputs) -> None:
    """What a capture must hold, so a capture cut short is not taken for the truth."""
    predicted = [p["event_id"] for p in golden["maintenance-predictions"]]
    scored = [s["event_id"] for s in golden["supply-chain-scores"]]
    assert sorted(predicted) == sorted(harness.valid_events("sensor-readings", SensorReading))
    assert sorted(scored) == sorted(harness.valid_events("supply-chain-transactions", SupplyChainTransaction))
    assert {a["alert_id"] for a in golden["alerts"]} == {e["alert_id"] for e in golden["explanations"]}
    kinds = Counter((a["kind"], a["decision_source"]) for a in golden["alerts"])
    assert {("maintenance.failure_risk", "model"), ("maintenance.failure_risk", "rule"),
            ("supply_chain.anomaly", "model")} <= set(kinds), kinds
    assert any(k.startswith("demand.") for k, _ in kinds), kinds
    codes = Counter((d["source_topic"], d["error_code"]) for d in golden["dead-letters"])
    assert codes[("sales-events", "sales_event_too_old")] == codes[("sales-events", "unknown_market")] == 1, codes
    assert {d["source_topic"] for d in golden["dead-letters"]} == set(harness.INPUT_TOPICS), codes
    assert {f["decision_source"] for f in golden["demand-forecasts"]} == {"model", "rule"}
    assert golden["drift-events"], "no drift reported"
