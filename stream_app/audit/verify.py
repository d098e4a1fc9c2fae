"""The auditor's check of the alert chains (`stream-app audit verify`): the `alert-audit`
topic's links against each other, and the `alerts` and `explanations` topics against them.

Findings, each naming the link (chain and place) and where the message lies:
    changed    an alert or explanation whose content no longer hashes to its link, or a link
               whose hash does not follow from its fields
    removed    a link whose alert (or explanation) is not on its topic, or a gap in a chain
    reordered  a link that comes after a later link of its chain
    inserted   an alert or explanation without a link, or with one the chain does not hold, or
               a second link claiming a place already taken (two writers, or a forged link)
    anchor     a head anchored earlier that the chain no longer holds: it was rewritten
Redeliveries (the same alert, same content, published again after a crash, with a link of its
own) are counted, not reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from stream_app.audit.chain import content_sha256, link_hash
from stream_app.intake import RawMessage


@dataclass(frozen=True)
class Finding:
    kind: str
    chain: str
    seq: Optional[int]
    where: str  # topic[partition]@offset
    detail: str

    def __str__(self) -> str:
        at = f" link {self.seq}" if self.seq is not None else ""
        return f"{self.kind}: chain {self.chain}{at} ({self.where}): {self.detail}"


@dataclass
class Report:
    chains: dict[str, tuple[int, str]] = field(default_factory=dict)  # chain -> head (seq, hash)
    links: int = 0
    alerts: int = 0
    explanations: int = 0
    redelivered: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def first_broken(self) -> dict[str, Finding]:
        """Per chain, its first broken link (lowest place; findings without one last)."""
        out: dict[str, Finding] = {}
        for f in sorted(self.findings, key=lambda f: (f.chain, f.seq if f.seq is not None else 1 << 62)):
            out.setdefault(f.chain, f)
        return out


@dataclass(frozen=True)
class _Link:
    chain: str
    seq: int
    prev: str
    hash: str
    alert_id: str
    alert_sha256: str
    explanation_sha256: Optional[str]
    where: str


def _where(r: RawMessage) -> str:
    return f"{r.topic}[{r.partition}]@{r.offset}"


def _json(r: RawMessage) -> Optional[dict[str, Any]]:
    try:
        value = json.loads(r.value) if r.value is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def verify(audit: Iterable[RawMessage], alerts: Iterable[RawMessage], explanations: Iterable[RawMessage],
           anchors: Iterable[dict[str, Any]] = ()) -> Report:
    report = Report()
    links = _check_links(audit, report)
    by_place = {(l.chain, l.seq): l for l in links}
    _check_messages(alerts, by_place, report, "alert", lambda l: l.alert_sha256)
    _check_messages(explanations, by_place, report, "explanation", lambda l: l.explanation_sha256)
    for anchor in anchors:
        chain, seq, h = str(anchor.get("chain")), anchor.get("seq"), anchor.get("hash")
        link = by_place.get((chain, seq))
        if link is None:
            report.findings.append(Finding("anchor", chain, seq, "anchor", f"the anchored head {str(h)[:12]} is no longer "
                                           "in the chain (rewritten, or past the audit topic's retention)"))
        elif link.hash != h:
            report.findings.append(Finding("anchor", chain, seq, link.where, f"the chain was rewritten: link {seq} hashes "
                                           f"to {link.hash[:12]}, anchored as {str(h)[:12]}"))
    return report


def _check_links(audit: Iterable[RawMessage], report: Report) -> list[_Link]:
    """Each chain's links in topic order: places consecutive, each following from the one
    before, each hash following from its fields."""
    kept: list[_Link] = []
    last: dict[str, _Link] = {}
    gaps: list[tuple[Finding, range]] = []
    places: set[tuple[str, int]] = set()  # (chain, seq) of the links kept
    for r in audit:
        v = _json(r)
        try:
            assert v is not None
            link = _Link(str(v["chain"]), int(v["seq"]), str(v["prev"]), str(v["hash"]), str(v["alert_id"]),
                         str(v["alert_sha256"]), v.get("explanation_sha256"), _where(r))
        except (AssertionError, KeyError, TypeError, ValueError):
            report.findings.append(Finding("inserted", (r.key or b"?").decode(errors="replace"), None, _where(r),
                                           "a record that is not a link"))
            continue
        report.links += 1
        if link_hash(link.chain, link.seq, link.prev, link.alert_sha256, link.explanation_sha256) != link.hash:
            report.findings.append(Finding("changed", link.chain, link.seq, link.where,
                                           "the link's hash does not follow from its fields"))
            continue
        before = last.get(link.chain)  # none: the chain starts here (at link 1, or past retention)
        if before is not None and link.seq <= before.seq:
            kind = "inserted" if (link.chain, link.seq) in places else "reordered"
            report.findings.append(Finding(kind, link.chain, link.seq, link.where,
                                           f"comes after link {before.seq} of its chain"
                                           + (" and claims a place already taken" if kind == "inserted" else "")))
            if kind == "reordered":
                kept.append(link)  # a link of the chain all the same: its alert is not an insertion
                places.add((link.chain, link.seq))
            continue
        if before is not None and link.seq > before.seq + 1:
            gap = Finding("removed", link.chain, before.seq + 1, link.where, f"links {before.seq + 1}..{link.seq - 1} are missing")
            report.findings.append(gap)
            gaps.append((gap, range(before.seq + 1, link.seq)))
        elif before is not None and link.prev != before.hash:
            report.findings.append(Finding("inserted", link.chain, link.seq, link.where,
                                           f"does not follow link {before.seq} ({before.hash[:12]})"))
            continue
        last[link.chain] = link
        kept.append(link)
        places.add((link.chain, link.seq))
    # A gap whose links all turned up later, out of order, was a reordering, not a removal.
    late = {(f.chain, f.seq) for f in report.findings if f.kind == "reordered"}
    for gap, missing in gaps:
        if all((gap.chain, seq) in late for seq in missing):
            report.findings.remove(gap)
    report.chains = {c: (l.seq, l.hash) for c, l in last.items()}
    return kept


def _check_messages(records: Iterable[RawMessage], by_place: dict[tuple[str, int], _Link], report: Report, what: str,
                    expected: Any) -> None:
    seen: set[tuple[str, int]] = set()
    content: dict[str, set[str]] = {}  # alert id -> contents of its linked copies
    unlinked: list[tuple[RawMessage, dict[str, Any]]] = []
    for r in records:
        v = _json(r)
        if v is None:
            continue
        if what == "alert":
            report.alerts += 1
        else:
            report.explanations += 1
        link = v.get("chain")
        place = (str(link.get("chain")), link.get("seq")) if isinstance(link, dict) else None
        known = by_place.get(place) if place is not None else None
        if known is None or link.get("hash") != known.hash:
            unlinked.append((r, v))
            continue
        digest = content_sha256(v)
        seen.add(place)  # type: ignore[arg-type]
        if digest != expected(known):
            report.findings.append(Finding("changed", known.chain, known.seq, _where(r),
                                           f"{what} {v.get('alert_id')} no longer hashes to its link"))
            continue
        content.setdefault(known.alert_id, set()).add(digest)
    for r, v in unlinked:
        alert_id = str(v.get("alert_id"))
        if content_sha256(v) in content.get(alert_id, set()):
            report.redelivered += 1  # an earlier copy of the same content is linked
            continue
        link = v.get("chain")
        chain = str(link.get("chain")) if isinstance(link, dict) else alert_id
        seq = link.get("seq") if isinstance(link, dict) else None
        report.findings.append(Finding("inserted", chain, seq if isinstance(seq, int) else None, _where(r),
                                       f"{what} {alert_id} has no link in the chain" if link is None else
                                       f"{what} {alert_id} carries a link the chain does not hold"))
    for place, link in by_place.items():
        if place in seen or (what == "explanation" and link.explanation_sha256 is None):
            continue
        if what == "alert" and link.alert_sha256 in content.get(link.alert_id, set()):
            report.redelivered += 1  # this copy's record is missing, but the same alert is linked elsewhere
            continue
        report.findings.append(Finding("removed", link.chain, link.seq, link.where,
                                       f"the {what} of link {link.seq} ({link.alert_id}) is not on its topic"))
