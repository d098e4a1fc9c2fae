"""The alert chains (stream_app/audit): a clean trail verifies, and each forgery an auditor
worries about (an alert or explanation changed, removed, reordered or inserted, a chain
rewritten after its head was anchored) is caught, naming the first broken link."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest

from schemas import Alert, ChainLink, Explanation
from stream_app.audit.chain import AlertChain, chain_id, content_sha256, link_hash
from stream_app.intake import RawMessage
from stream_app.audit.verify import Report, verify

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _alert(n: int) -> Alert:
    return Alert(alert_id=f"a-{n}", kind="maintenance.failure_risk", entity_id=f"m-{n % 3}", event_ids=[f"e-{n}"],
                 severity="warning", score=0.5 + n / 100, confidence=0.9, decision_source="model", reason="p high",
                 model_name="maintenance", model_version="v1", created_at=T0, event_ts=T0 + timedelta(minutes=n),
                 explanation=f"why {n}")


def _explanation(n: int) -> Explanation:
    return Explanation(alert_id=f"a-{n}", kind="maintenance.failure_risk", entity_id=f"m-{n % 3}", model_name="maintenance",
                       model_version="v1", decision_source="model", method="integrated_gradients", summary=f"summary {n}",
                       text=f"text {n}", inputs_sha256="0" * 64, created_at=T0)


class Trail:
    """Topics as the verifier reads them, written through the chain as the pipeline does."""

    def __init__(self, tail: Optional[tuple[int, str]] = None) -> None:
        async def read_tail(_chain: str) -> Optional[tuple[int, str]]:
            return tail

        self.chain = AlertChain("maintenance", read_tail)
        self.audit: list[RawMessage] = []
        self.alerts: list[RawMessage] = []
        self.explanations: list[RawMessage] = []

    def publish(self, n: int, partition: int = 0, explained: bool = True, created: datetime = T0) -> None:
        asyncio.run(self.chain.ensure([partition]))
        alert = _alert(n).model_copy(update={"created_at": created})
        explanation = _explanation(n).model_copy(update={"created_at": created}) if explained else None
        alert, explanation, record = self.chain.link(partition, alert, explanation)
        self.audit.append(_record("alert-audit", 0, len(self.audit), record.chain, record.model_dump_json()))
        self.alerts.append(_record("alerts", n % 2, len(self.alerts), alert.entity_id, alert.model_dump_json()))
        if explanation is not None:
            self.explanations.append(_record("explanations", 0, len(self.explanations), alert.alert_id,
                                             explanation.model_dump_json()))

    def verify(self, anchors: tuple[dict, ...] = ()) -> Report:
        return verify(self.audit, self.alerts, self.explanations, anchors)


def _record(topic: str, partition: int, offset: int, key: str, value: str) -> RawMessage:
    return RawMessage(topic, partition, offset, key.encode(), value.encode())


def _edited(record: RawMessage, **changes: object) -> RawMessage:
    value = json.loads(record.value or b"")
    value.update(changes)
    return dataclasses.replace(record, value=json.dumps(value).encode())


def _trail(n: int = 10) -> Trail:
    trail = Trail()
    for i in range(n):
        trail.publish(i, partition=i % 2, explained=i % 4 != 3)
    return trail


def _first(report: Report, chain: str) -> tuple[str, Optional[int]]:
    finding = report.first_broken()[chain]
    return finding.kind, finding.seq


P0 = chain_id("maintenance", 0)


def test_a_clean_trail_verifies_with_a_chain_per_input_partition() -> None:
    report = _trail().verify()
    assert report.ok, report.findings
    assert set(report.chains) == {P0, chain_id("maintenance", 1)}
    assert (report.links, report.alerts, report.explanations) == (10, 10, 8)
    assert report.chains[P0][0] == 5


def test_the_link_covers_the_alert_and_its_explanation_but_not_the_wall_clock() -> None:
    trail = _trail(1)
    alert = json.loads(trail.alerts[0].value or b"")
    link = alert["chain"]
    explained = json.loads(trail.explanations[0].value or b"")
    assert explained["chain"] == link and link["seq"] == 1
    assert link["hash"] == link_hash(P0, 1, link["prev"], content_sha256(alert), content_sha256(explained))
    assert content_sha256({**alert, "created_at": "2030-01-01T00:00:00Z"}) == content_sha256(alert)
    assert content_sha256({**alert, "score": 0.1}) != content_sha256(alert)


def test_a_changed_alert_is_caught_at_its_link() -> None:
    trail = _trail()
    trail.alerts[4] = _edited(trail.alerts[4], severity="critical")
    assert _first(trail.verify(), P0) == ("changed", 3)


def test_a_changed_explanation_is_caught_at_its_alert_link() -> None:
    trail = _trail()
    trail.explanations[2] = _edited(trail.explanations[2], text="nothing to see here")
    assert _first(trail.verify(), P0) == ("changed", 2)


def test_a_removed_alert_is_caught() -> None:
    trail = _trail()
    del trail.alerts[6]
    assert _first(trail.verify(), P0) == ("removed", 4)


def test_a_removed_link_is_caught_as_a_gap() -> None:
    trail = _trail()
    removed = trail.audit.pop(4)
    trail.alerts = [a for a in trail.alerts if json.loads(a.value or b"")["chain"]["hash"] != json.loads(removed.value or b"")["hash"]]
    report = trail.verify()
    assert _first(report, P0) == ("removed", 3)


def test_reordered_links_are_caught() -> None:
    trail = _trail()
    trail.audit[2], trail.audit[4] = trail.audit[4], trail.audit[2]  # links 2 and 3 of chain 0
    report = trail.verify()
    assert [f.kind for f in report.findings] == ["reordered"] and _first(report, P0) == ("reordered", 2)


def test_an_alert_without_a_link_or_with_a_forged_one_is_caught() -> None:
    trail = _trail()
    head_seq, head = trail.verify().chains[P0]
    forged = _alert(99)
    trail.alerts.append(_record("alerts", 0, 99, forged.entity_id, forged.model_dump_json()))
    report = trail.verify()
    assert [f.kind for f in report.findings] == ["inserted"] and "a-99" in report.findings[0].detail
    # a link that looks right (the next place, a correct hash) but that the chain never held
    sha = content_sha256(_alert(98))
    link = {"chain": P0, "seq": head_seq + 1, "prev": head, "hash": link_hash(P0, head_seq + 1, head, sha, None)}
    trail.alerts[-1] = _record("alerts", 0, 99, "m-2", _alert(98).model_copy(update={"chain": ChainLink(**link)}).model_dump_json())
    assert [f.kind for f in trail.verify().findings] == ["inserted"]


def test_a_forged_link_claiming_a_taken_place_is_caught() -> None:
    trail = _trail()
    first = json.loads(trail.audit[0].value or b"")
    sha = content_sha256(_alert(77))
    fake = {**first, "alert_id": "a-77", "alert_sha256": sha, "explanation_sha256": None,
            "hash": link_hash(P0, 1, first["prev"], sha, None)}
    trail.audit.append(_record("alert-audit", 0, 50, P0, json.dumps(fake)))
    report = trail.verify()
    assert ("inserted", 1) in {(f.kind, f.seq) for f in report.findings}


def test_a_redelivered_alert_is_counted_not_reported() -> None:
    trail = _trail()
    trail.publish(4, partition=0, created=T0 + timedelta(hours=1))  # the same alert again after a crash
    report = trail.verify()
    assert report.ok, report.findings
    # ...and its first link's record lost with the crash: still only a redelivery
    trail.audit = [r for r in trail.audit if json.loads(r.value or b"")["seq"] != 3 or json.loads(r.value or b"")["chain"] != P0]
    first_copy = [a for a in trail.alerts if json.loads(a.value or b"")["alert_id"] == "a-4"][0]
    trail.alerts.remove(first_copy)
    report = trail.verify()
    # the lost record leaves a gap in the audit topic, but the alert is no finding: a redelivery
    assert [(f.kind, f.chain, f.seq, f.where.split("@")[0]) for f in report.findings] == [("removed", P0, 3, "alert-audit[0]")]
    assert report.redelivered == 1


def test_a_worker_taking_over_goes_on_from_the_chain_tail() -> None:
    trail = _trail(4)
    seq, head = trail.verify().chains[P0]
    successor = Trail(tail=(seq, head))
    successor.audit, successor.alerts, successor.explanations = trail.audit, trail.alerts, trail.explanations
    successor.publish(10, partition=0)
    report = successor.verify()
    assert report.ok and report.chains[P0][0] == seq + 1
    starts_over = Trail()  # a successor that did not read the tail starts a second chain 0
    starts_over.audit, starts_over.alerts, starts_over.explanations = trail.audit, trail.alerts, trail.explanations
    starts_over.publish(11, partition=0)
    assert not starts_over.verify().ok


def test_a_rewritten_chain_verifies_alone_but_not_against_its_anchored_head() -> None:
    trail = _trail()
    anchors = tuple({"chain": c, "seq": s, "hash": h} for c, (s, h) in trail.verify().chains.items())
    rewritten = Trail()  # every link computed afresh over a changed history: consistent in itself
    for i in range(10):
        if i != 4:
            rewritten.publish(i, partition=i % 2, explained=i % 4 != 3)
    assert rewritten.verify().ok
    report = rewritten.verify(anchors)
    assert {f.kind for f in report.findings} == {"anchor"} and P0 in report.first_broken()


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", json.dumps({"chain": P0}).encode()])
def test_a_record_that_is_not_a_link_is_reported(value: bytes) -> None:
    trail = _trail(2)
    trail.audit.append(RawMessage("alert-audit", 0, 9, P0.encode(), value))
    assert [f.kind for f in trail.verify().findings] == ["inserted"]


class _Tails:
    """A tail reader whose reads wait for `release`, counting them; partition 9 fails once."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.release = asyncio.Event()
        self.failed = False

    async def __call__(self, chain: str) -> Optional[tuple[int, str]]:
        self.reads.append(chain)
        await self.release.wait()
        if chain.endswith("/9") and not self.failed:
            self.failed = True
            raise ConnectionError("broker gone")
        return (len(self.reads), "f" * 64)


def test_heads_read_ahead_are_not_read_again() -> None:
    async def run() -> None:
        tails = _Tails()
        chain = AlertChain("maintenance", tails)
        chain.prefetch([0, 1])
        chain.prefetch([0, 1])  # already reading
        await asyncio.sleep(0)
        assert sorted(tails.reads) == ["maintenance/0", "maintenance/1"] and not chain.heads
        tails.release.set()
        await chain.ensure([0, 1])
        assert chain.heads == {0: (2, "f" * 64), 1: (2, "f" * 64)}  # both read before either answered
        assert len(tails.reads) == 2

    asyncio.run(run())


def test_a_head_forgotten_while_read_is_read_again() -> None:
    async def run() -> None:
        tails = _Tails()
        chain = AlertChain("maintenance", tails)
        chain.prefetch([0])
        await asyncio.sleep(0)
        chain.forget([0])  # revoked while its read was under way: that read's answer is stale
        tails.release.set()
        await chain.ensure([0])
        assert tails.reads == ["maintenance/0", "maintenance/0"]
        assert chain.heads[0] == (2, "f" * 64)  # the second read's answer

    asyncio.run(run())


def test_a_failed_read_fails_ensure_and_is_tried_again() -> None:
    async def run() -> None:
        tails = _Tails()
        chain = AlertChain("maintenance", tails)
        tails.release.set()
        chain.prefetch([9])
        with pytest.raises(ConnectionError):
            await chain.ensure([9])
        await chain.ensure([9])
        assert 9 in chain.heads and tails.reads == ["maintenance/9", "maintenance/9"]

    asyncio.run(run())
