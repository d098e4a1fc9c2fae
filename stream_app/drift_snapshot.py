"""Drift detectors as plain data: what `DriftMonitor.dumps` writes to the `drift-state` and
`maintenance-state` topics, and what `loads` accepts back.

Anyone who can write to the broker can write to those topics, so a snapshot is data, never
code: JSON with a fixed layout (below), every field checked for type and range when read, and a
record that does not fit is refused with `ForgedSnapshot` (the caller counts it in
`stream_app_state_refused_total` and starts the detectors afresh). No pickle.

ADWIN's state lives in River's Rust extension, whose only export is its own binary encoding
(bincode of the Rust struct). That encoding is translated here to and from plain fields (the
window's bucket rows, totals and counters) and checked before River sees it, so the extension
only ever reads bytes this module wrote from validated values. The translation is tied to the
River release in constraints.txt; tests/unit/test_drift_snapshot.py fails loudly if River
changes the layout.

    {"format": "stream-app/drift-monitor", "version": 1, "stream": ..., "partition": int | null,
     "config": {adwin_delta, kswin_alpha, kswin_every, min_effect, reference_size},
     "kswin_features": [...], "detections": int,
     "features": {name: {"use_kswin": bool, "seen": int, "pending_before": float | null,
                         "reference": [n, mean, m2], "kswin": null | {...WindowKS fields...},
                         "adwin": {"params": [delta, clock, max_buckets, min_window_length,
                                              grace_period],
                                   "drift_detected": bool,
                                   "sums": [total, variance, width, total_width],
                                   "counters": [n_buckets, max_n_buckets, tick, n_detections],
                                   "buckets": [[current_idx, [totals], [variances]], ...]}}}}
"""

from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any, Optional

from river import drift as river_drift

if TYPE_CHECKING:
    from stream_app.drift import DriftMonitor

FORMAT, VERSION = "stream-app/drift-monitor", 1
MAX_BYTES = 8 << 20  # a monitor of 64 features with full windows is ~300 KB
_MAX_WINDOW = 10_000
_MAX_LEVELS = 62  # bucket level i holds 2**i values: more levels than a u64 count could hold
_MAX_BUCKETS = 1_000
_I32 = 2**31 - 1


class ForgedSnapshot(ValueError):
    """A drift snapshot that is not one this product wrote (or is damaged)."""


# --- writing --------------------------------------------------------------------------------------
def dumps(monitor: "DriftMonitor") -> bytes:
    c = monitor.config
    doc = {
        "format": FORMAT, "version": VERSION, "stream": monitor.stream, "partition": monitor.partition,
        "config": {"adwin_delta": c.adwin_delta, "kswin_alpha": c.kswin_alpha, "kswin_every": c.kswin_every,
                   "min_effect": c.min_effect, "reference_size": c.reference_size},
        "kswin_features": sorted(monitor.kswin_features), "detections": monitor.detections,
        "features": {name: _feature_doc(f) for name, f in monitor.features.items()},
    }
    # Sums of huge values overflow to infinity (a gateway sending 1e308s): numbers JSON writes
    # as Infinity / NaN, which loads reads back.
    return json.dumps(doc, separators=(",", ":")).encode()


def _feature_doc(f: Any) -> dict[str, Any]:
    k = f.kswin
    return {
        "use_kswin": f.use_kswin, "seen": f.seen, "pending_before": f.pending_before,
        "reference": [f.reference.n, f.reference.mean, f.reference.m2],
        "kswin": None if k is None else {"alpha": k.alpha, "window_size": k.window_size, "stat_size": k.stat_size,
                                         "seed": k.seed, "window": list(k.window), "tests": k.tests},
        "adwin": adwin_doc(f.adwin),
    }


def adwin_doc(adwin: river_drift.ADWIN) -> dict[str, Any]:
    """River's ADWIN as plain fields (its Rust state decoded from River's own encoding)."""
    blob = adwin._helper.__getstate__()
    r = _Reader(blob)
    inner = [r.f64(), r.i32(), r.u64(), r.f64(), r.f64()]  # delta, clock, max_buckets, min window, grace
    sums = [r.f64() for _ in range(4)]
    counters = [r.i32() for _ in range(4)]
    buckets = []
    for _ in range(r.u64()):
        r.u64()  # the level's capacity: max_buckets, written back from params
        current = r.u64()
        totals = [r.f64() for _ in range(r.u64())]
        variances = [r.f64() for _ in range(r.u64())]
        buckets.append([current, totals, variances])
    params = [r.f64(), r.i32(), r.u64(), r.i32(), r.i32()]  # as the Python object was built
    if not r.done() or inner[:3] != params[:3]:
        raise RuntimeError("River's ADWIN state layout is not the one this release knows (see constraints.txt)")
    return {"params": params, "drift_detected": bool(adwin.drift_detected), "sums": sums, "counters": counters,
            "buckets": buckets}


# --- reading --------------------------------------------------------------------------------------
def loads(data: bytes) -> "DriftMonitor":
    from stream_app.drift import DriftConfig, DriftMonitor, FeatureDrift, WindowKS, _Reference, MAX_FEATURES

    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_BYTES:
        raise ForgedSnapshot("not a drift snapshot (too large or not bytes)")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForgedSnapshot(f"not a drift snapshot: {exc}") from None
    d = _Fields(doc, "snapshot")
    if d.str("format") != FORMAT or d.int("version", 1, 1) != VERSION:
        raise ForgedSnapshot("not a drift snapshot of this format")
    cfg = d.obj("config")
    try:
        config = DriftConfig(adwin_delta=cfg.num("adwin_delta"), kswin_alpha=cfg.num("kswin_alpha"),
                             kswin_every=cfg.int("kswin_every", 1, _I32), min_effect=cfg.num("min_effect"),
                             reference_size=cfg.int("reference_size", 10, _I32))
    except ValueError as exc:
        raise ForgedSnapshot(f"snapshot config: {exc}") from None
    partition = doc.get("partition")
    if partition is not None and (not isinstance(partition, int) or isinstance(partition, bool) or partition < 0):
        raise ForgedSnapshot("snapshot partition must be a non-negative integer or null")
    kswin_features = d.list("kswin_features", 1000)
    if not all(isinstance(x, str) for x in kswin_features):
        raise ForgedSnapshot("kswin_features must be names")
    monitor = DriftMonitor(d.str("stream"), partition, config, kswin_features)
    monitor.detections = d.int("detections", 0, _I32)
    features = d.obj("features")
    if len(features.doc) > MAX_FEATURES:
        raise ForgedSnapshot(f"more than {MAX_FEATURES} features")
    for name in features.doc:
        f = features.obj(name)
        feature = FeatureDrift(config, use_kswin=f.bool("use_kswin"))
        feature.seen = f.int("seen", 0, 2**62)
        pending = f.doc.get("pending_before")
        feature.pending_before = None if pending is None else _floats([pending], 1, "pending_before")[0]
        n, mean, m2 = _floats(f.list("reference", 3), 3, "reference")
        if not math.isfinite(n) or n != int(n) or n < 0 or m2 < 0:
            raise ForgedSnapshot("reference: n must be a count and m2 >= 0")
        feature.reference = _Reference(int(n), mean, m2)
        k = f.doc.get("kswin")
        if k is not None:
            kf = f.obj("kswin")
            window_size = kf.int("window_size", 2, _MAX_WINDOW)
            window = _floats(kf.list("window", window_size), None, "kswin window")
            feature.kswin = WindowKS(alpha=kf.num("alpha"), window_size=window_size,
                                     stat_size=kf.int("stat_size", 1, window_size - 1), seed=kf.int("seed", 0, _I32),
                                     window=window, tests=kf.int("tests", 0, 2**62))
        elif feature.use_kswin:
            raise ForgedSnapshot(f"{name}: use_kswin without a window")
        feature.adwin = adwin_from_doc(f.obj("adwin"))
        monitor.features[name] = feature
    return monitor


def adwin_from_doc(a: "_Fields") -> river_drift.ADWIN:
    """An ADWIN in the state `adwin_doc` described, after checking every field."""
    params = a.list("params", 5)
    if len(params) != 5:
        raise ForgedSnapshot("adwin params must be 5 values")
    delta, clock, max_buckets, min_window, grace = params
    if not (_finite(delta) and 0 < delta < 1 and _int(clock, 1, _I32) and _int(max_buckets, 1, _MAX_BUCKETS)
            and _int(min_window, 1, _I32) and _int(grace, 0, _I32)):
        raise ForgedSnapshot("adwin params out of range")
    total, variance, width, total_width = _floats(a.list("sums", 4), 4, "adwin sums")
    if not math.isfinite(width) or width < 0 or total_width < 0:
        raise ForgedSnapshot("adwin sums out of range")
    counters = a.list("counters", 4)
    if len(counters) != 4 or not all(_int(x, 0, _I32) for x in counters):
        raise ForgedSnapshot("adwin counters must be 4 non-negative integers")
    buckets = a.list("buckets", _MAX_LEVELS)
    if not buckets:
        raise ForgedSnapshot("adwin needs at least one bucket level")
    out = _Writer()
    out.f64(delta), out.i32(clock), out.u64(max_buckets), out.f64(float(min_window)), out.f64(float(grace))
    for v in (total, variance, width, total_width):
        out.f64(v)
    for v in counters:
        out.i32(v)
    out.u64(len(buckets))
    width_seen = 0
    for level, row in enumerate(buckets):
        if not isinstance(row, list) or len(row) != 3:
            raise ForgedSnapshot("an adwin bucket row is [current_idx, totals, variances]")
        current, totals, variances = row
        totals = _floats(totals, max_buckets + 1, "adwin totals")
        variances = _floats(variances, max_buckets + 1, "adwin variances")
        if not _int(current, 0, max_buckets):
            raise ForgedSnapshot("adwin bucket fill out of range")
        width_seen += current << level
        out.u64(max_buckets), out.u64(current)
        for values in (totals, variances):
            out.u64(len(values))
            for v in values:
                out.f64(v)
    if width_seen != width:
        raise ForgedSnapshot(f"adwin width {width} does not match its buckets ({width_seen})")
    out.f64(delta), out.i32(clock), out.u64(max_buckets), out.i32(min_window), out.i32(grace)
    adwin = river_drift.ADWIN(delta=delta, clock=clock, max_buckets=max_buckets, min_window_length=min_window,
                              grace_period=grace)
    adwin._helper.__setstate__(out.bytes())
    adwin._drift_detected = a.bool("drift_detected")
    return adwin


# --- helpers --------------------------------------------------------------------------------------
def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any, lo: int, hi: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _floats(values: Any, n: Optional[int], what: str) -> list[float]:
    """Numbers, infinities included: a detector's sums may overflow on huge (finite) inputs,
    and arithmetic on them is harmless; what is checked is the structure."""
    if not isinstance(values, list) or (n is not None and len(values) != n) or not all(_number(v) for v in values):
        raise ForgedSnapshot(f"{what} must be {n if n is not None else 'some'} numbers")
    return [float(v) for v in values]


class _Fields:
    """Typed access to one JSON object; anything missing or of the wrong type is refused."""

    def __init__(self, doc: Any, where: str) -> None:
        if not isinstance(doc, dict):
            raise ForgedSnapshot(f"{where} must be an object")
        self.doc, self.where = doc, where

    def _get(self, key: str) -> Any:
        if key not in self.doc:
            raise ForgedSnapshot(f"{self.where}.{key} is missing")
        return self.doc[key]

    def str(self, key: str) -> str:
        v = self._get(key)
        if not isinstance(v, str) or len(v) > 200:
            raise ForgedSnapshot(f"{self.where}.{key} must be a short string")
        return v

    def int(self, key: str, lo: int, hi: int) -> int:
        v = self._get(key)
        if not _int(v, lo, hi):
            raise ForgedSnapshot(f"{self.where}.{key} must be an integer in [{lo}, {hi}]")
        return int(v)

    def num(self, key: str) -> float:
        v = self._get(key)
        if not _finite(v):
            raise ForgedSnapshot(f"{self.where}.{key} must be a finite number")
        return float(v)

    def bool(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise ForgedSnapshot(f"{self.where}.{key} must be true or false")
        return v

    def list(self, key: str, longest: int) -> list[Any]:
        v = self._get(key)
        if not isinstance(v, list) or len(v) > longest:
            raise ForgedSnapshot(f"{self.where}.{key} must be a list of at most {longest}")
        return v

    def obj(self, key: str) -> "_Fields":
        return _Fields(self._get(key), f"{self.where}.{key}")


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self.blob, self.at = blob, 0

    def _take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.blob, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def f64(self) -> float:
        return float(self._take("<d"))

    def i32(self) -> int:
        return int(self._take("<i"))

    def u64(self) -> int:
        return int(self._take("<Q"))

    def done(self) -> bool:
        return self.at == len(self.blob)


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def f64(self, v: float) -> None:
        self.parts.append(struct.pack("<d", float(v)))

    def i32(self, v: int) -> None:
        self.parts.append(struct.pack("<i", int(v)))

    def u64(self, v: int) -> None:
        self.parts.append(struct.pack("<Q", int(v)))

    def bytes(self) -> bytes:
        return b"".join(self.parts)
