"""Write the golden run's fixed input once, from the product's simulators (seeds in
tests/golden/world.py), plus hand-made bad input and gateway arrays.

    python -m tests.golden.build_input

The files are committed: the test replays them byte for byte, so later changes to the
simulators do not change the input. Run this only to replace the input on purpose, then
recapture (`python -m tests.golden.capture`). One JSON Lines file per input topic, one line per
Kafka message in send order: `{"key": ..., "value": <JSON>}` (the message is `json.dumps` of it),
`"text"` (other UTF-8 bytes, as they are) or `"b64"` (bytes that are not UTF-8).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from stream_app.settings import Settings
from stream_app.simulation.demand import demand_events
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from tests.golden import world as w

INPUT = Path(__file__).parent / "input"
Message = tuple[Optional[str], bytes]

# Machines that report through one gateway: their readings go out only in its array messages,
# keyed by the gateway, so each machine's readings stay in order on one partition.
GATEWAY, GATEWAY_MACHINES, GATEWAY_TICKS = "gw-7", ("m-0004", "m-0009"), 3
DEMAND_SERIES = ("bk-0002/US", "bk-0002/GB", "bk-0002/DE", "bk-0003/US", "bk-0001/JP", "bk-0003/ES", "bk-0000/ES")
SUPPLY_TRANSACTIONS = 1200


def _text(value: Any) -> bytes:
    return json.dumps(value).encode()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# --- maintenance ------------------------------------------------------------------------------------
def _bad_readings() -> list[Message]:
    """One dead letter each, of these codes: not_json, not_utf8, invalid_fields, non_finite_number,
    unsupported_schema_version, timestamp_in_future (until 2090), not_an_object, empty_message."""
    ts = _iso(w.MAINTENANCE_START + timedelta(hours=30))
    return [
        ("bad", b"{not json"),
        ("bad", b"\xff\xfe\x00garbage"),
        ("bad", _text({"event_id": "bad-1", "machine_id": "m-0001", "ts": ts, "sensors": {"vibration_rms": "high"}})),
        ("bad", b'{"event_id": "bad-2", "machine_id": "m-0001", "ts": "' + ts.encode() + b'", "sensors": {"rpm": NaN}}'),
        ("bad", _text({"schema_version": 9, "event_id": "bad-3", "machine_id": "m-0001", "ts": ts, "sensors": {"rpm": 1.0}})),
        ("bad", _text({"event_id": "bad-4", "machine_id": "m-0001", "ts": "2090-03-01T00:00:00Z", "sensors": {"rpm": 1.0}})),
        ("bad", b'"just a string"'),
        ("bad", b"[]"),
    ]


def _gateway_array(readings: list[dict[str, Any]], index: int) -> bytes:
    """The gateway writes one machine's times as epoch milliseconds, the other's with an offset;
    its third message carries an element without a time (one dead letter, the rest scored)."""
    items: list[dict[str, Any]] = []
    for r in readings:
        item = dict(r)
        if r["machine_id"] == GATEWAY_MACHINES[0]:
            item["ts"] = _epoch_ms(r["ts"])
        else:
            moment = datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).astimezone(timezone(timedelta(hours=1)))
            item["ts"] = moment.isoformat(timespec="milliseconds")
        items.append(item)
    if index == 2:
        items.insert(1, {"event_id": f"{GATEWAY}-no-ts", "machine_id": GATEWAY_MACHINES[0], "sensors": {"rpm": 1480.0}})
    return _text(items)


def maintenance() -> tuple[list[Message], list[Message]]:
    end = _iso(w.MAINTENANCE_START + timedelta(days=w.MAINTENANCE_DAYS))
    fleet = FleetSimulator(FleetConfig(n_machines=w.MAINTENANCE_MACHINES, seed=w.MAINTENANCE_SEED, start=w.MAINTENANCE_START))
    readings: list[Message] = []
    outcomes: list[Message] = []
    held: list[dict[str, Any]] = []  # the gateway's readings not sent yet
    ticks: set[str] = set()
    sent_arrays = 0
    for event in fleet.live():
        value = event.value
        if value["ts"] >= end:
            break
        if event.kind == "outcome":
            outcomes.append((event.key, _text(value)))
        elif value["machine_id"] in GATEWAY_MACHINES:
            if value["ts"] not in ticks and len(ticks) == GATEWAY_TICKS:
                readings.append((GATEWAY, _gateway_array(held, sent_arrays)))
                held, ticks, sent_arrays = [], set(), sent_arrays + 1
            held.append(value)
            ticks.add(value["ts"])
        else:
            readings.append((event.key, _text(value)))
    if held:
        readings.append((GATEWAY, _gateway_array(held, sent_arrays)))
    bad = _bad_readings()
    step = len(readings) // (len(bad) + 1)
    for i, message in enumerate(bad, start=1):  # spread through the stream, between batches or not
        readings.insert(i * step + i - 1, message)
    outcomes.append(("m-0001", _text({"event_id": "bad-outcome", "machine_id": "m-0001", "ts": end, "outcome": "exploded"})))
    return readings, outcomes


# --- supply chain -----------------------------------------------------------------------------------
def supply_chain() -> tuple[list[Message], list[Message]]:
    """The first transactions after the model's history (the model never saw them), with the
    verdicts that came due meanwhile, a gateway array (one bad element) and bad input."""
    transactions: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for kind, value in w.supply_chain_run():
        if value["ts"] < w.SUPPLY_CUT_TS:
            continue
        if kind == "transaction":
            if len(transactions) == SUPPLY_TRANSACTIONS:
                break
            transactions.append(value)
        else:
            verdicts.append(value)
    messages: list[Message] = [(t["shipment_id"], _text(t)) for t in transactions]
    middle = len(messages) // 2
    bundle = transactions[middle:middle + 3]
    gateway = [bundle[0], {"event_id": "sc-gw-bad", "shipment_id": bundle[0]["shipment_id"]}, *bundle[1:]]
    messages[middle:middle + 3] = [("sc-gw-1", _text(gateway))]
    good = transactions[0]
    messages[100:100] = [
        ("bad", b"{not json"),
        ("bad", _text({**good, "event_id": "sc-bad-1", "quantity": -3.0})),
        ("bad", _text({**good, "event_id": "sc-bad-2", "source_type": "spaceship"})),
        ("bad", _text({**good, "event_id": "sc-bad-3"}).replace(b'"unit_price": ', b'"unit_price": NaN, "x": ')),
        ("bad", _text({**good, "event_id": "sc-bad-4", "schema_version": 7})),
    ]
    verdict_messages: list[Message] = [(v["shipment_id"], _text(v)) for v in verdicts]
    verdict_messages.append(("bad", _text({"event_id": "sc-verdict-bad", "shipment_id": "x", "verdict": "maybe", "ts": good["ts"]})))
    return messages, verdict_messages


# --- demand -----------------------------------------------------------------------------------------
def _demand_stream() -> Iterator[tuple[str, dict[str, Any]]]:
    start = datetime.combine(w.DEMAND_START, datetime.min.time(), tzinfo=timezone.utc)
    for topic, event in demand_events(Settings(), seed=w.DEMAND_SEED, start=start, n_skus=w.DEMAND_SKUS):
        yield topic, event.value


def demand() -> tuple[list[Message], list[Message]]:
    """Orders of a few series for DEMAND_DAYS days as the simulator sends them (duplicates, late
    orders, returns as negative units), the calendar of their markets, and: a sale of an unknown
    market, resends, a sale after its day closed (a correction), one beyond the correction
    window, bad JSON and a calendar entry without its kind."""
    end = _iso(datetime.combine(w.DEMAND_START, datetime.min.time(), tzinfo=timezone.utc) + timedelta(days=w.DEMAND_DAYS))
    markets = {s.split("/")[1] for s in DEMAND_SERIES}
    calendar: list[dict[str, Any]] = []
    sales: list[dict[str, Any]] = []
    for topic, value in _demand_stream():
        if topic == Settings().topics.demand_calendar:
            if value["market"] in markets:
                calendar.append(value)
            continue
        if value["ts"] >= end:
            break
        if f"{value['sku']}/{value['market']}" in DEMAND_SERIES:
            sales.append(value)

    def sale(template: dict[str, Any], suffix: str, **changes: Any) -> dict[str, Any]:
        return {**template, "event_id": template["event_id"] + suffix, **changes}

    n = len(sales)
    early, late = sales[n // 10], sales[3 * n // 4]
    corrected_ts = _iso(datetime.fromisoformat(late["ts"].replace("Z", "+00:00")) - timedelta(days=5))
    extra = {
        n // 5: [sale(early, "-xx", market="XX")],  # unknown market
        n // 3: sales[n // 3 - 10:n // 3],  # at-least-once: the 10 sales before sent again
        4 * n // 5: [sale(late, "-corr", ts=corrected_ts)],  # its day closed days ago: a correction
    }
    # at the end, beyond DEMAND__CORRECTION_DAYS
    ordered = [s for i, value in enumerate(sales) for s in (*extra.get(i, ()), value)] + [sale(early, "-old")]
    stream: list[Message] = [(f"{s['sku']}/{s['market']}", _text(s)) for s in ordered]
    stream.append(("bk-0002/US", b"{not json"))
    calendar_messages: list[Message] = [(c["market"], _text(c)) for c in calendar]
    calendar_messages.append(("US", _text({"event_id": "cal-bad", "ts": calendar[0]["ts"], "market": "US",
                                           "start": "2025-10-01", "end": "2025-10-02"})))
    return stream, calendar_messages


# --- files ------------------------------------------------------------------------------------------
def line(key: Optional[str], value: bytes) -> str:
    """`value`: a JSON message whose bytes are json.dumps of it; `text`: any other UTF-8 bytes;
    `b64`: the rest."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return json.dumps({"key": key, "b64": base64.b64encode(value).decode()})
    try:
        parsed = json.loads(text)
        canonical = json.dumps(parsed, allow_nan=False) == text
    except ValueError:  # not JSON, or NaN: kept as text (the file stays strict JSON)
        canonical = False
    if canonical:
        return json.dumps({"key": key, "value": parsed})
    return json.dumps({"key": key, "text": text})


def write(topic: str, messages: Iterable[Message]) -> int:
    lines = [line(key, value) for key, value in messages]
    (INPUT / f"{topic}.jsonl").write_text("\n".join(lines) + "\n")
    return len(lines)


def main() -> None:
    INPUT.mkdir(exist_ok=True)
    topics = Settings().topics
    readings, outcomes = maintenance()
    transactions, verdicts = supply_chain()
    sales, calendar = demand()
    for topic, messages in ((topics.sensor_readings, readings), (topics.maintenance_outcomes, outcomes),
                            (topics.supply_chain_transactions, transactions), (topics.supply_chain_verdicts, verdicts),
                            (topics.sales_events, sales), (topics.demand_calendar, calendar)):
        print(f"{topic}: {write(topic, messages)} messages")


if __name__ == "__main__":
    main()
