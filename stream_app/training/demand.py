"""Train the demand transformer on a sales history, compare it with seasonal naive and a moving
average on later, held-out time, and save a registry version the live scorer can load.

Time-ordered split (days of the daily panel, T days in all)
    test        forecast origins from the close of the day before the last `test_days` days on:
                every series and origin whose 30-day horizon lies inside the data
    validation  the `val_days` before the test period: origins whose horizon ends before the
                test period (early stopping, interval calibration, the fallback's choice)
    training    origins whose horizon ends before the validation period
No forecast is ever scored on days its model or calibration saw. An origin needs the series to
have sold once by then; earlier days of its window are marked inactive, as a live worker sees
a series from its first sale on.

Training
    Each epoch draws `samples_per_epoch` random (series, origin) pairs of the training period;
    loss = pinball loss of the daily quantiles + `totals_weight` x that of the 7- and 30-day
    totals, each sample weighted by its scale (mean daily units), so the loss is in units as the
    weighted metrics are. Adam, cosine learning rate, gradient clipping; the weights with the
    lowest validation loss are kept (early stopping after `patience` epochs without a better one).

Interval calibration
    On the validation origins, the P10-P50 and P50-P90 gaps of the daily forecasts (and of the
    totals, separately) are scaled by the factor that makes P10-P90 cover 80 % there; the
    scorer applies the same factors. The report shows coverage before and after, on test. The
    same validation forecasts fit the confidence's scale (stream_app.scoring.demand_model).

Baselines and fallback
    Seasonal naive and the moving average (stream_app.scoring.demand_fallback), with intervals
    from standardised residual quantiles fitted on the training and validation origins. The one
    with the lower validation WAPE becomes the scorer's fallback.

Comparison with the current version
    When a version is current, it forecasts the same test origins too (its own markets, weights
    and interval calibration: `evaluate_version`), scored by the same code; both sets of the
    gate's metrics go into the new manifest's "comparison".

Threads: `threads` (default 1) for torch during the run, restored after (two threads gain
nothing at this size and are erratic on a shared 2-core box).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from schemas.sales import CalendarEntry, SalesEvent
from stream_app.features.demand import (
    KNOWN_CHANNELS,
    OBSERVED_CHANNELS,
    STATIC_CHANNELS,
    DemandFeatures,
    ModelInputs,
    encode,
)
from stream_app.models.demand_transformer import TOTAL_WINDOWS, DemandTransformer
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.scoring import demand_fallback as fallback
from stream_app.scoring.demand_model import (
    TOLERANCE,
    WEIGHTS_FILE,
    LoadedDemandModel,
    confidence,
    fit_z_scale,
    model_forecast,
)
from stream_app.training.demand_data import (  # noqa: F401 - re-exported for the CLI
    DemandHistory,
    Panel,
    build_panel,
    load_demand_history,
    simulated_history,
)
from stream_app import progress as show
from stream_app.training.demand_metrics import horizon_scores, interval_factor, pinball_loss, widen
from stream_app.training.demand_plots import DemandForecasts
from stream_app.training.demand_report import build_report
from stream_app.training.release import Release, comparison, gate_metrics
from stream_app.training.report import jsonable

MODEL_NAME = "demand"
COVERAGE_TARGET = 0.8


@dataclass
class TrainConfig:
    history_days: int = 90
    horizon_days: int = 30
    # model
    d_model: int = 32
    heads: int = 4
    layers: int = 1
    dropout: float = 0.1
    # optimisation
    epochs: int = 10  # at most; early stopping may end sooner
    samples_per_epoch: int = 6144
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-5
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    totals_weight: float = 0.5
    patience: int = 3
    max_validation_samples: int = 3000
    # split
    test_days: int = 120
    val_days: int = 60
    seed: int = 0
    threads: int = 1
    # "auto": the model serves only if it beats its rule fallback on validation (choose_serving);
    # "model": it serves regardless (a deliberately short training that exercises the model).
    serve: str = "auto"

    @classmethod
    def quick(cls, **overrides: Any) -> "TrainConfig":
        """Small and fast (tests, demos): seconds on a short history, a weaker model."""
        base: dict[str, Any] = dict(d_model=16, heads=2, epochs=3, samples_per_epoch=1024, patience=2, max_validation_samples=1500)
        base.update(overrides)
        return cls(**base)

    def __post_init__(self) -> None:
        if self.history_days < 14 or self.horizon_days < max(TOTAL_WINDOWS):
            raise ValueError(f"need history_days >= 14 and horizon_days >= {max(TOTAL_WINDOWS)}")
        if self.test_days < 1 or self.val_days < 1:
            raise ValueError("test_days and val_days must be positive")
        if self.epochs < 1 or self.batch_size < 1 or self.samples_per_epoch < 1:
            raise ValueError("epochs, batch_size and samples_per_epoch must be >= 1")


# --- windows ---------------------------------------------------------------------------------------
@dataclass
class Windows:
    """Model inputs and what the baselines need, for pairs (series, origin index)."""

    inputs: ModelInputs
    units: np.ndarray  # (B, L) history, NaN where inactive
    active: np.ndarray  # (B, L) bool
    future: np.ndarray  # (B, H) realised units after the origin


class WindowMaker:
    def __init__(self, panel: Panel, features: DemandFeatures) -> None:
        self.panel, self.features = panel, features
        L, H = features.history_days, features.horizon_days
        pad = lambda a, fill: np.concatenate([np.full((a.shape[0], L) + a.shape[2:], fill, dtype=a.dtype), a], axis=1)  # noqa: E731
        self._units = pad(panel.units, 0.0)
        self._revenue = pad(panel.revenue, 0.0)
        self._promo = pad(panel.promo_units, 0.0)
        self._calendar = pad(panel.calendar, 0.0)
        self._first_active = panel.first_active + L  # in padded indices
        self._future = np.concatenate([panel.units, np.full((panel.units.shape[0], H), np.nan)], axis=1)

    def __call__(self, series: np.ndarray, origin: np.ndarray) -> Windows:
        L, H = self.features.history_days, self.features.horizon_days
        s = np.asarray(series, dtype=np.int64)[:, None]
        # padded index of the window's days origin-L+1 .. origin (the padding is L days)
        past = np.asarray(origin, dtype=np.int64)[:, None] + 1 + np.arange(L)[None, :]
        units = self._units[s, past]
        active = past >= self._first_active[s]
        with np.errstate(invalid="ignore", divide="ignore"):
            price = np.where(units > 0, self._revenue[s, past] / units, np.nan)
        calendar = self._calendar[s, np.asarray(origin)[:, None] + 1 + np.arange(L + H)[None, :]]
        markets = [self.panel.series[i][1] for i in np.asarray(series)]
        inputs = encode(self.features, units, price, self._promo[s, past], active, calendar,
                        self.panel.first_day + np.asarray(origin), markets)
        future = self._future[s, np.asarray(origin)[:, None] + 1 + np.arange(H)[None, :]]
        return Windows(inputs, np.where(active, units, np.nan), active, future)


def split_pairs(panel: Panel, config: TrainConfig) -> dict[str, np.ndarray]:
    """(series, origin) pairs per period, as (N, 2) int arrays; see the module docstring."""
    T, H = panel.days, config.horizon_days
    test_start = T - config.test_days  # first day of the test period
    val_start = test_start - config.val_days
    if val_start - H <= 0:
        raise ValueError(
            f"history of {T} days is too short for test_days={config.test_days}, val_days={config.val_days} "
            f"and a {H}-day horizon"
        )
    origins = np.arange(T)
    s_idx, t_idx = np.meshgrid(np.arange(len(panel.series)), origins, indexing="ij")
    alive = t_idx >= panel.first_active[:, None]
    ends = t_idx + H  # index of the horizon's last day
    periods = {
        "train": alive & (ends < val_start),
        "validation": alive & (ends >= val_start) & (ends < test_start),
        "test": alive & (t_idx >= test_start - 1) & (ends <= T - 1),
    }
    return {name: np.stack([s_idx[m], t_idx[m]], axis=1) for name, m in periods.items()}


# --- fitting -----------------------------------------------------------------------------------------
@dataclass
class FitResult:
    model: DemandTransformer
    epochs_run: int
    best_epoch: int
    train_loss: list[float]
    val_loss: list[float]
    seconds: float


def _loss(model: DemandTransformer, w: Windows, config: TrainConfig) -> torch.Tensor:
    from stream_app.scoring.demand_model import to_tensors

    out = model(*to_tensors(w.inputs))
    scale = torch.from_numpy(w.inputs.scale.astype(np.float32))
    target = torch.from_numpy(np.nan_to_num(w.future, nan=0.0).astype(np.float32)) / scale[:, None]
    totals = torch.stack([target[:, :k].mean(dim=1) for k in TOTAL_WINDOWS], dim=1)
    return pinball_loss(out.quantiles, target, weight=scale) + config.totals_weight * pinball_loss(out.totals, totals, weight=scale)


def fit_model(
    make: WindowMaker, n_markets: int, train: np.ndarray, val: np.ndarray, config: TrainConfig,
    progress: Optional[Callable[[str], None]] = None,
) -> FitResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = DemandTransformer(
        len(OBSERVED_CHANNELS), len(KNOWN_CHANNELS), len(STATIC_CHANNELS), n_markets,
        history=config.history_days, horizon=config.horizon_days, d_model=config.d_model,
        heads=config.heads, layers=config.layers, dropout=config.dropout,
    )
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(config.samples_per_epoch / config.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * config.epochs, eta_min=config.lr * config.min_lr_ratio)
    val_rows = val if len(val) <= config.max_validation_samples else val[rng.choice(len(val), config.max_validation_samples, replace=False)]
    val_windows = [make(val_rows[i : i + 1024, 0], val_rows[i : i + 1024, 1]) for i in range(0, len(val_rows), 1024)]
    best, best_state, best_epoch, bad = math.inf, None, 0, 0
    train_losses: list[float] = []
    val_losses: list[float] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        picks = train[rng.integers(0, len(train), steps_per_epoch * config.batch_size)]
        total = 0.0
        for b in range(steps_per_epoch):
            rows = picks[b * config.batch_size : (b + 1) * config.batch_size]
            loss = _loss(model, make(rows[:, 0], rows[:, 1]), config)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            sched.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            v = sum(float(_loss(model, w, config)) * len(w.inputs) for w in val_windows) / max(1, len(val_rows))
        train_losses.append(total / steps_per_epoch)
        val_losses.append(v)
        if progress:
            progress(f"epoch {epoch}: train {train_losses[-1]:.4f} validation {v:.4f} ({time.perf_counter() - started:.0f} s)")
        if v < best - 1e-6:
            best, best_epoch, bad = v, epoch, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, epoch, best_epoch, train_losses, val_losses, time.perf_counter() - started)


# --- evaluation --------------------------------------------------------------------------------------
@dataclass
class Evaluated:
    """Forecasts for many pairs, made chunk by chunk (the model inputs are not kept)."""

    units: np.ndarray  # (N, L) history for the baselines
    active: np.ndarray
    future: np.ndarray  # (N, H)
    history_days: np.ndarray  # (N,)
    daily: Optional[np.ndarray] = None  # (N, H, 3) the model's, uncalibrated
    totals: Optional[np.ndarray] = None  # (N, W, 3)


def _evaluate(make: WindowMaker, pairs: np.ndarray, model: Optional[DemandTransformer], chunk: int = 2048) -> Evaluated:
    units, active, future, dailies, totals = [], [], [], [], []
    for i in range(0, len(pairs), chunk):
        w = make(pairs[i : i + chunk, 0], pairs[i : i + chunk, 1])
        units.append(w.units)
        active.append(w.active)
        future.append(w.future)
        if model is not None:
            fc = model_forecast(model, w.inputs)
            dailies.append(fc.daily)
            totals.append(fc.totals)
    act = np.concatenate(active)
    return Evaluated(np.concatenate(units), act, np.concatenate(future), act.sum(axis=1),
                     np.concatenate(dailies) if dailies else None, np.concatenate(totals) if totals else None)


def _calibrated(w: Evaluated, daily_factor: float, totals_factors: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The model's daily and totals quantiles with their intervals widened by the calibration."""
    assert w.daily is not None and w.totals is not None
    totals = np.stack([widen(w.totals[:, i], f) for i, f in enumerate(totals_factors)], axis=1)
    return widen(w.daily, daily_factor), totals


def evaluate_version(version: ModelVersion, panel: Panel, pairs: np.ndarray, config: TrainConfig) -> dict[str, float]:
    """The promotion gate's offline metrics of an existing version on a run's test origins
    `pairs`: the version's markets, weights and interval calibration, loaded as a worker loads
    them; the run's panel and metric code, so the numbers compare with the new model's."""
    loaded = LoadedDemandModel.from_version(version)
    if loaded.features.horizon_days != config.horizon_days:
        raise ValueError(f"it forecasts {loaded.features.horizon_days} days, this run {config.horizon_days}")
    test = _evaluate(WindowMaker(panel, loaded.features), pairs, loaded.model)
    daily, totals = _calibrated(test, loaded.daily_factor, loaded.totals_factors)
    return gate_metrics(MODEL_NAME, {"metrics": {"model": horizon_scores(test.future, daily, _totals_truth(test.future), totals)}})


def choose_serving(model: Mapping[str, Any], rules: Mapping[str, Any], method: str,
                   force_model: bool = False) -> dict[str, Any]:
    """What forecasts once the version is served: the model, or its rule fallback when the rule
    had the lower pinball loss over days 1-30 on the validation origins (a model that does not
    beat a moving average on the user's own history should not be what they get). Both are
    judged with their calibrated intervals, on the same origins. `force_model`: TrainConfig.serve."""
    keep = ("pinball", "wape", "coverage")
    m, r = model.get("pinball"), rules.get("pinball")
    rule_won = m is not None and r is not None and r < m
    decides = "rules" if rule_won and not force_model else "model"
    name = method.replace("_", " ")
    why = (f"the {name} rule beat the model on validation: pinball {r:.4g} vs {m:.4g}" if rule_won
           else f"the model beat the {name} rule on validation: pinball {m:.4g} vs {r:.4g}" if m is not None and r is not None
           else "no validation comparison: the model serves")
    if rule_won and force_model:
        why = f"the model serves by configuration (serve='model'), though {why}"
    return {"decides": decides, "why": why, "rule_method": method, "fitted_on": "validation origins",
            "validation": {"model": {k: model.get(k) for k in keep}, "rules": {k: rules.get(k) for k in keep}}}


def _with_truth(forecast: tuple[np.ndarray, np.ndarray], totals_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(daily, totals) -> (daily, totals truth, totals): horizon_scores' argument order after y."""
    return forecast[0], totals_y, forecast[1]


def _totals_truth(future: np.ndarray) -> np.ndarray:
    return np.stack([future[:, :w].sum(axis=1) for w in TOTAL_WINDOWS], axis=1)


def _baselines(w: Evaluated, fitted: dict[str, fallback.ResidualQuantiles]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    H = w.future.shape[1]
    return {m: fallback.forecast(m, w.units, w.active, H, fitted[m]) for m in fallback.METHODS}


def _confidence_bands(y: np.ndarray, daily: np.ndarray, totals: np.ndarray, conf: np.ndarray,
                      rule_daily: np.ndarray) -> list[dict[str, Any]]:
    """Per confidence band: how often the 7-day total landed within +-TOLERANCE of its P50 (what
    confidence claims, before the history and market factors), and the model's and the rule
    fallback's WAPE over days 1-7."""
    from stream_app.scoring.demand_model import TOLERANCE
    from stream_app.training.demand_metrics import quantile_scores

    y7 = y[:, :7].sum(axis=1)
    hit = np.abs(y7 - totals[:, 0, 1]) <= TOLERANCE * totals[:, 0, 1]
    rows = []
    for lo, hi in ((0.0, 0.1), (0.1, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01)):
        sel = (conf >= lo) & (conf < hi)
        rows.append({
            "band": f"{lo:.1f}-{min(hi, 1.0):.1f}", "forecasts": int(sel.sum()),
            "mean_confidence": float(conf[sel].mean()) if sel.any() else None,
            "within_tolerance": float(hit[sel].mean()) if sel.any() else None,
            "wape": quantile_scores(y[sel, :7], daily[sel, :7])["wape"],
            "rule_wape": quantile_scores(y[sel, :7], rule_daily[sel, :7])["wape"],
        })
    return rows


def data_fingerprint(sales: Sequence[SalesEvent], calendar: Sequence[CalendarEntry]) -> dict[str, Any]:
    h = hashlib.sha256()
    for e in sorted(sales, key=lambda e: e.event_id):
        h.update(f"{e.event_id}|{e.ts.isoformat()}|{e.sku}|{e.market}|{e.units!r}|{e.unit_price!r}|{e.promo}\n".encode())
    c = hashlib.sha256()
    for e in sorted(calendar, key=lambda e: e.event_id):
        c.update(f"{e.event_id}|{e.kind}|{e.market}|{e.sku}|{e.start}|{e.end}|{e.intensity!r}\n".encode())
    return {"sales_sha256": h.hexdigest(), "calendar_sha256": c.hexdigest(), "sales": len(sales), "calendar": len(calendar)}


# --- the entry point ---------------------------------------------------------------------------------
def train_demand(
    registry: ModelRegistry,
    sales: Sequence[SalesEvent],
    calendar: Sequence[CalendarEntry],
    config: TrainConfig = TrainConfig(),
    progress: bool | Callable[[str], None] = False,
    *,
    promote: Union[bool, str, Release] = True,
    source: Optional[dict[str, Any]] = None,
) -> ModelVersion:
    """Train, evaluate against the baselines and the current version, and save a new `demand`
    version, released as `promote` says (stream_app.training.release; default: through the
    promotion gate, False: registered only). `progress`: True shows a bar of the epochs
    (stream_app.progress), or a callable gets a line per epoch."""
    wall_start = time.perf_counter()
    epochs = show.bar("training demand transformer", total=config.epochs, unit="epoch") if progress is True else None

    def on_epoch(line: str) -> None:  # "epoch 3: train ... validation ..."
        assert epochs is not None
        epochs.update(1)
        epochs.set_postfix_str(line.split(": ", 1)[-1])

    say: Optional[Callable[[str], None]] = on_epoch if epochs is not None else (progress or None)  # type: ignore[assignment]
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(registry, list(sales), list(calendar), config, say, Release.of(promote), source, wall_start)
    finally:
        torch.set_num_threads(previous)
        if epochs is not None:
            epochs.close()


def _train(
    registry: ModelRegistry, sales: list[SalesEvent], calendar: list[CalendarEntry], config: TrainConfig,
    say: Optional[Callable[[str], None]], release: Release, source: Optional[dict[str, Any]], wall_start: float,
) -> ModelVersion:
    H = config.horizon_days
    panel = build_panel(sales, calendar, H)
    pairs = split_pairs(panel, config)
    for name in ("train", "validation", "test"):
        if not len(pairs[name]):
            raise ValueError(f"no {name} forecast origins: the history is too short or too sparse")
    markets = tuple(sorted({m for _, m in panel.series}))
    features = DemandFeatures(markets, config.history_days, H)
    make = WindowMaker(panel, features)

    fit = fit_model(make, len(markets), pairs["train"], pairs["validation"], config, say)
    model = fit.model

    # interval calibration and the fallback's choice on validation
    val = _evaluate(make, pairs["validation"], model)
    assert val.daily is not None and val.totals is not None
    daily_factor = interval_factor(val.future, val.daily, COVERAGE_TARGET)
    val_totals = _totals_truth(val.future)
    totals_factors = [interval_factor(val_totals[:, i], val.totals[:, i], COVERAGE_TARGET) for i in range(len(TOTAL_WINDOWS))]
    val_totals_cal = np.stack([widen(val.totals[:, i], f) for i, f in enumerate(totals_factors)], axis=1)
    z_scale = fit_z_scale(val_totals_cal, val_totals[:, 0])
    fit_pairs = np.concatenate([pairs["train"], pairs["validation"]])
    fit_rows = fit_pairs[np.random.default_rng(config.seed).choice(len(fit_pairs), min(len(fit_pairs), 40_000), replace=False)]
    fit_w = _evaluate(make, fit_rows, None)
    residuals = {m: fallback.fit_residual_quantiles(m, fit_w.units, fit_w.active, np.nan_to_num(fit_w.future)) for m in fallback.METHODS}
    val_base = _baselines(val, residuals)
    val_wape = {m: horizon_scores(val.future, d, _totals_truth(val.future), t)["1-30"]["wape"] for m, (d, t) in val_base.items()}
    fallback_method = min(val_wape, key=lambda m: val_wape[m] if val_wape[m] is not None else math.inf)
    serving = choose_serving(
        horizon_scores(val.future, widen(val.daily, daily_factor), val_totals, val_totals_cal)["1-30"],
        horizon_scores(val.future, *_with_truth(val_base[fallback_method], val_totals))["1-30"], fallback_method,
        force_model=config.serve == "model",
    )

    # test period
    test = _evaluate(make, pairs["test"], model)
    assert test.daily is not None and test.totals is not None
    y, y_tot = test.future, _totals_truth(test.future)
    model_daily, model_totals = _calibrated(test, daily_factor, totals_factors)
    base = _baselines(test, residuals)
    metrics = {
        "model": horizon_scores(y, model_daily, y_tot, model_totals),
        "model_uncalibrated": horizon_scores(y, test.daily, y_tot, test.totals),
        **{m: horizon_scores(y, d, y_tot, t) for m, (d, t) in base.items()},
    }
    metrics["served"] = metrics["model" if serving["decides"] == "model" else fallback_method]
    known = np.ones(len(y), dtype=bool)
    conf = confidence(model_totals, test.history_days, known, z_scale)
    per_day = {
        name: [horizon_scores(y[:, h : h + 1], d[:, h : h + 1], y_tot, t)["1-1"] for h in range(H)]
        for name, (d, t) in {"model": (model_daily, model_totals), **base}.items()
    }
    sn = metrics["seasonal_naive"]["1-30"]
    mo = metrics["model"]["1-30"]
    target = {
        "wape_reduction_vs_seasonal_naive": 1 - mo["wape"] / sn["wape"] if sn["wape"] else None,
        "pinball_reduction_vs_seasonal_naive": 1 - mo["pinball"] / sn["pinball"] if sn["pinball"] else None,
        "coverage": mo["coverage"],
    }
    target["met"] = bool(
        target["wape_reduction_vs_seasonal_naive"] is not None and target["wape_reduction_vs_seasonal_naive"] >= 0.25
        and target["pinball_reduction_vs_seasonal_naive"] is not None and target["pinball_reduction_vs_seasonal_naive"] >= 0.25
        and abs(mo["coverage"] - COVERAGE_TARGET) <= 0.05
    )
    split = {
        "first_day": panel.date(0), "last_day": panel.date(panel.days - 1), "days": panel.days,
        "validation_start": panel.date(panel.days - config.test_days - config.val_days),
        "test_start": panel.date(panel.days - config.test_days),
        "series": len(panel.series), "markets": len(markets),
        "train_origins": len(pairs["train"]), "validation_origins": len(pairs["validation"]), "test_origins": len(pairs["test"]),
    }
    manifest = {
        "kind": "demand_transformer",
        "run_id": uuid.uuid4().hex,
        "hyperparameters": model.hyperparameters(),
        "features": features.to_dict(),
        "quantiles": [0.1, 0.5, 0.9],
        "total_windows": list(TOTAL_WINDOWS),
        "interval_calibration": {"daily_factor": daily_factor, "totals_factors": totals_factors, "target_coverage": COVERAGE_TARGET,
                                 "fitted_on": "validation origins"},
        "confidence": {"z_scale": z_scale, "tolerance": TOLERANCE, "fitted_on": "validation origins"},
        "serving": serving,
        "fallback": {"method": fallback_method, "validation_wape": val_wape,
                     "residual_quantiles": {m: r.to_dict() for m, r in residuals.items()}},
        "metrics": jsonable(metrics),
        "target": jsonable(target),
        "split": split,
        "training": {"epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch, "fit_seconds": round(fit.seconds, 2),
                     "train_loss": [round(v, 5) for v in fit.train_loss], "val_loss": [round(v, 5) for v in fit.val_loss]},
        "train_config": jsonable(asdict(config)),
        "data_fingerprint": data_fingerprint(sales, calendar),
    }
    bands = _confidence_bands(y, model_daily, model_totals, conf, base[fallback_method][0])
    extras = {"per_horizon_day": jsonable(per_day), "confidence_bands": jsonable(bands)}
    current = registry.current(MODEL_NAME)
    if current is not None:
        manifest["comparison"] = comparison(
            current, gate_metrics(MODEL_NAME, manifest), lambda version: evaluate_version(version, panel, pairs["test"], config),
            f"the test period of this run's data, {split['test_start']} to {split['last_day']}: "
            f"{split['test_origins']} forecast origins of {split['series']} series, {H}-day horizons",
        )
    seconds = time.perf_counter() - wall_start
    manifest["training"]["wall_seconds"] = round(seconds, 2)
    with registry.new_version(MODEL_NAME, jsonable(manifest), promote=False, actor=release.actor, reason=release.reason) as staging:
        torch.save(model.state_dict(), staging / WEIGHTS_FILE)
        forecasts = DemandForecasts(panel, pairs["test"], y, model_daily)  # for the report's fan charts
        build_report(manifest, extras, source, seconds, forecasts).write(staging)
    written = next((v for v in reversed(registry.versions(MODEL_NAME)) if v.manifest.get("run_id") == manifest["run_id"]), None)
    if written is None:
        raise RuntimeError("the new model version was written but cannot be found in the registry")
    release.apply(registry, MODEL_NAME, written.version)
    return written
