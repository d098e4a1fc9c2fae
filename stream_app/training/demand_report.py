"""The demand training report (report.md / report.json beside the model version)."""

from __future__ import annotations

from typing import Any, Optional

from stream_app.training.demand_plots import DemandForecasts, add_figures
from stream_app.training.report import Report

METHOD_NAMES = {"model": "Transformer", "seasonal_naive": "Seasonal naive", "moving_average": "Moving average (28 d)"}
SECTIONS = (("1-7", "days 1-7"), ("8-30", "days 8-30"), ("1-30", "days 1-30"), ("total_7", "7-day total"), ("total_30", "30-day total"))


def _pct(v: Optional[float]) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def build_report(manifest: dict[str, Any], extras: dict[str, Any], source: Optional[dict[str, Any]], seconds: float,
                 forecasts: Optional[DemandForecasts] = None) -> Report:
    """The report with its figures; the fan charts need `forecasts` (the test period's)."""
    m, split, target = manifest["metrics"], manifest["split"], manifest["target"]
    cal, fb, tr = manifest["interval_calibration"], manifest["fallback"], manifest["training"]
    report = Report("Demand model: training and evaluation", data={
        "model": "demand", "run_id": manifest["run_id"], "metrics": m, "target": target, "split": split,
        "training": tr, "interval_calibration": cal, "fallback": {"method": fb["method"], "validation_wape": fb["validation_wape"]},
        "serving": manifest.get("serving"), "train_config": manifest["train_config"], "data_fingerprint": manifest["data_fingerprint"], "source": source,
        "wall_seconds": round(seconds, 2), **extras,
    })
    met = "met" if target["met"] else "NOT met"
    report.text("Summary", (
        f"P10/P50/P90 for each of the next {manifest['features']['horizon_days']} days from {manifest['features']['history_days']} days "
        f"of history, {split['series']} series in {split['markets']} markets, evaluated on {split['test_origins']:,} forecasts made from "
        f"{split['test_start']} on (held-out time). Over days 1-30 the transformer's WAPE is "
        f"{_pct(target['wape_reduction_vs_seasonal_naive'])} lower than seasonal naive's and its weighted pinball loss "
        f"{_pct(target['pinball_reduction_vs_seasonal_naive'])} lower; P10-P90 covers {_pct(target['coverage'])} of realised days. "
        f"Target (>= 25 % lower WAPE and pinball than seasonal naive, coverage 80 % +- 5): {met}."
    ))
    serving = manifest.get("serving")
    if serving:
        v = serving["validation"]
        served = "the transformer" if serving["decides"] == "model" else f"the {serving['rule_method'].replace('_', ' ')} rule"
        report.kv("Served", {
            "forecasts come from": served, "why": serving["why"],
            "validation pinball, model / rule": f"{v['model']['pinball']} / {v['rules']['pinball']}",
            "validation WAPE, model / rule": f"{v['model']['wape']} / {v['rules']['wape']}",
            "test pinball of what is served": m["served"]["1-30"]["pinball"],
        })
    methods = ["model", "seasonal_naive", "moving_average"]
    for key, label in SECTIONS:
        report.table(
            f"Test period, {label}",
            ["Method", "WAPE", "Weighted pinball", "P10-P90 coverage", "Units"],
            [[METHOD_NAMES[n], m[n][key]["wape"], m[n][key]["pinball"], m[n][key]["coverage"], m[n][key]["units"]] for n in methods],
        )
    report.table(
        "Interval calibration (test period)",
        ["Forecast", "Coverage before", "Coverage after", "Gap factor (fitted on validation)"],
        [["daily", m["model_uncalibrated"]["1-30"]["coverage"], m["model"]["1-30"]["coverage"], cal["daily_factor"]],
         ["7-day total", m["model_uncalibrated"]["total_7"]["coverage"], m["model"]["total_7"]["coverage"], cal["totals_factors"][0]],
         ["30-day total", m["model_uncalibrated"]["total_30"]["coverage"], m["model"]["total_30"]["coverage"], cal["totals_factors"][1]]],
        note="The P10-P50 and P50-P90 gaps are scaled by the factor that makes P10-P90 cover 80 % on the validation period; the scorer applies it too.",
    )
    add_figures(report, forecasts, extras.get("per_horizon_day") or {}, METHOD_NAMES,
                manifest["interval_calibration"]["target_coverage"])
    report.table(
        "Confidence on the test period",
        ["Confidence", "Forecasts", "Mean confidence", "7-day total within +-25 %", "WAPE days 1-7", "Rule fallback's WAPE"],
        [[b["band"], b["forecasts"], b["mean_confidence"], b["within_tolerance"], b["wape"], b["rule_wape"]] for b in extras["confidence_bands"]],
        note=("Confidence claims the chance that the 7-day total lands within +-25 % of its P50 (times a history and a market "
              "factor: stream_app/scoring/demand_model.py); the column next to it is how often it did. The last column is what "
              f"the rule fallback ({fb['method'].replace('_', ' ')}) would have scored on the same forecasts."),
    )
    report.kv("Split (time-ordered)", split, note=(
        "Training origins end their 30-day horizon before the validation period, validation origins before the test period; "
        "test forecasts are made from the day before the test period on and scored on the days that follow."))
    report.kv("Training", {
        "epochs run / best": f"{tr['epochs_run']} / {tr['best_epoch']}", "fit seconds": tr["fit_seconds"],
        "wall seconds": round(seconds, 2),
        "hyperparameters": ", ".join(f"{k}={v}" for k, v in manifest["hyperparameters"].items()),
        "train loss by epoch": tr["train_loss"], "validation loss by epoch": tr["val_loss"],
        "fallback (lower validation WAPE)": f"{fb['method']} ({', '.join(f'{k} {v:.3f}' for k, v in fb['validation_wape'].items() if v is not None)})",
    })
    report.kv("Data", {**manifest["data_fingerprint"], "markets": ", ".join(manifest["features"]["markets"])})
    if source:
        report.kv("Source files", source)
    return report
