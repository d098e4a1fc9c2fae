"""The steady load of the fault suite: the three streams' input events, interleaved at their own
rates into one send order for `SteadyProducer`.

Only the event streams go out: sensor readings, supply-chain transactions and sales. Their side
inputs stay out of this run: supply-chain verdicts change the graph but get no per-event answer
(the supply-chain stream test covers them), and a demand calendar would make which markets are
known depend on how far each worker's calendar reader got; without one every market is accepted
(stream_app/scoring/demand.py, "Markets")."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

from stream_app.settings import Settings
from stream_app.simulation.demand import demand_events
from stream_app.simulation.maintenance import FleetConfig, FleetSimulator
from stream_app.simulation.supply_chain import supply_chain_events
from tests.integration.kafka_clients import Outgoing, interleave


@dataclass
class Load:
    readings: list[dict[str, Any]]  # sensor-readings, as sent (keyed by machine)
    transactions: list[Outgoing]  # supply-chain-transactions, keyed by shipment
    sales: list[Outgoing]  # sales-events, keyed sku/market; a few duplicates, late sales and returns
    messages: list[Outgoing]  # all of them, in send order
    rate: float  # messages per second, all streams together

    @property
    def seconds(self) -> float:
        return len(self.messages) / self.rate


def steady_load(seconds: float, readings_per_s: float, transactions_per_s: float, sales_per_s: float) -> Load:
    """`seconds` of load at the given rates per stream."""
    topics = Settings().topics
    readings = FleetSimulator(FleetConfig(n_machines=60, seed=21)).live_readings(int(seconds * readings_per_s))
    transactions = [Outgoing(topic, e.key, e.value) for topic, e in islice(
        ((t, e) for t, e in supply_chain_events(Settings(), seed=3) if t == topics.supply_chain_transactions),
        int(seconds * transactions_per_s))]
    # 6 SKUs in ~8 markets: ~50 series and ~120 sales per simulated day, so a day closes every
    # couple of seconds; the simulator adds duplicates, late sales and returns (bad input).
    sales = [Outgoing(topic, e.key, e.value) for topic, e in islice(
        ((t, e) for t, e in demand_events(Settings(), seed=4, n_skus=6) if t == topics.sales_events),
        int(seconds * sales_per_s))]
    as_sent = [Outgoing(topics.sensor_readings, r["machine_id"], r) for r in readings]
    messages = interleave((as_sent, readings_per_s), (transactions, transactions_per_s), (sales, sales_per_s))
    return Load(readings, transactions, sales, messages, readings_per_s + transactions_per_s + sales_per_s)
