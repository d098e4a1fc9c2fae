"""Data sets: weeks of normal, unlabelled history to train on, then test weeks with about 1 % of
attacks, written in the product's input layout (JSON Lines of transactions, as sent to Kafka).

Cases: the two independent network shapes (benchmarks/supply_chain/shapes.py) at two seeds and
sizes, and the product's own simulator as one case among them (its attack kinds mapped to the
families here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from benchmarks.supply_chain import shapes
from benchmarks.supply_chain.attacks import KINDS, SHIPMENTS, schedule
from benchmarks.supply_chain.world import DAY, Network, World


@dataclass
class Dataset:
    name: str
    description: str
    history: list[dict[str, Any]]  # normal only, no verdicts
    test: list[dict[str, Any]]
    labels: dict[str, tuple[str, str]]  # test event_id -> (family/kind, instance)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """history.jsonl (what `train --data` reads), test.jsonl and labels.json (ground truth)."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = folder / "history.jsonl", folder / "test.jsonl"
        for path, rows in zip(paths, (self.history, self.test)):
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        (folder / "labels.json").write_text(json.dumps(self.labels, indent=0))
        return paths

    def family(self, event_id: str) -> str:
        """'normal' or the attack family."""
        label = self.labels.get(event_id)
        return label[0].split("/")[0] if label else "normal"


def network_case(name: str, build: Callable[[int], Network], seed: int, start: datetime, history_weeks: int = 8,
                 test_weeks: int = 2, attack_share: float = 0.01) -> Dataset:
    """Run the network for its history, then its test weeks with attacks sized to about
    `attack_share` of the test transactions."""
    net = build(seed)
    world = World(net, start, seed)
    t_test = world.t0 + history_weeks * 7 * DAY
    world.run_until(t_test - 14 * DAY)
    before = len(world.transactions)
    world.run_until(t_test)
    per_day = (len(world.transactions) - before) / 14.0
    expected = per_day * test_weeks * 7 * attack_share
    per_kind = {k: max(3, round(expected / len(KINDS) / SHIPMENTS.get(k, 1.0))) for k in KINDS}
    world.run_until(t_test + test_weeks * 7 * DAY, schedule(world, t_test, t_test + test_weeks * 7 * DAY, per_kind, seed))
    rows = sorted(world.transactions, key=lambda r: (r["ts"], r["event_id"]))
    cut = _iso(t_test)
    history = [r for r in rows if r["ts"] < cut]
    test = [r for r in rows if r["ts"] >= cut]
    assert not any(r["event_id"] in world.labels for r in history), "attacks belong to the test weeks"
    sites = len({r["source_id"] for r in rows} | {r["target_id"] for r in rows})
    return Dataset(name, f"{net.name}: {sites} sites, {len(net.items)} products, {len(history):,} history and "
                         f"{len(test):,} test transactions", history, test,
                   {e: world.labels[e] for e in (r["event_id"] for r in test) if e in world.labels})


_PRODUCT_FAMILIES = {"lot_clone": "custody/never_received", "route_diversion": "routing/new_edge",
                     "counterfeit_entry": "counterfeit/entry", "quantity_price": "volume_price/quantity",
                     "off_hours": "timing/odd_hour", "collusive_ring": "collusion/cycle"}


def product_simulator_case(seed: int, history_weeks: int = 8, test_weeks: int = 2, attacks_per_day: float = 10.0) -> Dataset:
    """The product's own simulator: attacks only in the test weeks, verdicts dropped from the
    history (the same unlabelled path as the other cases)."""
    from stream_app.simulation.supply_chain import SupplyChainConfig, SupplyChainSimulator

    days = (history_weeks + test_weeks) * 7
    config = SupplyChainConfig(seed=seed, network_seed=seed, attack_start_day=history_weeks * 7,
                               attacks_per_day=attacks_per_day, cleared_share=0.0)
    sim = SupplyChainSimulator(config)
    out = sim.history(days)
    kinds = out.attack_shipments()
    cut = _iso(config.start.timestamp() + history_weeks * 7 * DAY)
    rows = sorted(out.transactions, key=lambda r: (r["ts"], r["event_id"]))
    history = [r for r in rows if r["ts"] < cut]
    test = [r for r in rows if r["ts"] >= cut]
    labels = {r["event_id"]: (_PRODUCT_FAMILIES[kinds[r["shipment_id"]]], f"{kinds[r['shipment_id']]}|{r['lot_id']}")
              for r in test if r["shipment_id"] in kinds}
    return Dataset("product-simulator", f"the product's own simulator (seed {seed}): {len(history):,} history and "
                   f"{len(test):,} test transactions", history, test, labels)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def cases(quick: bool) -> list[Callable[[], Dataset]]:
    """Each case builds its data set when called (they are big)."""
    start_a = datetime(2025, 2, 3, tzinfo=timezone.utc)
    start_b = datetime(2025, 6, 2, 6, tzinfo=timezone.utc)
    if quick:
        return [
            lambda: network_case("pharma-distribution", lambda s: shapes.pharma_distribution(s, regions=5, pharmacies=180,
                                                                                                retailers=15, products=40), 7, start_a),
            lambda: network_case("parts-tiers", lambda s: shapes.parts_tiers(s, workshops=120, dealers=24), 5, start_b),
            lambda: product_simulator_case(4),
        ]
    return [
        lambda: network_case("pharma-distribution", shapes.pharma_distribution, 7, start_a),
        lambda: network_case("parts-tiers", shapes.parts_tiers, 5, start_b),
        lambda: network_case("pharma-distribution-b", lambda s: shapes.pharma_distribution(s, regions=6, pharmacies=360,
                                                                                             retailers=40, products=75), 11,
                             start_a + timedelta(days=140)),
        lambda: product_simulator_case(4),
    ]
