"""The maintenance training report (report.md / report.json in the version's directory): what
was trained on what, how the LSTM did against the baselines on the test period, the operating
point each got on validation, what users get from the served policy, calibration and
confidence, and the rule limits the version carries."""

from __future__ import annotations

from typing import Any, Optional

from stream_app.scoring.confidence import SPREAD_PENALTY
from stream_app.training.maintenance_plots import MaintenanceCurves, add_figures
from stream_app.training.report import Report

MODEL_NAME = "maintenance"


# --- the report ----------------------------------------------------------------------------------
_METRIC_ROWS = [
    ("ROC AUC", "roc_auc"),
    ("Average precision", "average_precision"),
    ("Precision @ threshold", "precision"),
    ("Recall @ threshold", "recall"),
    ("False-positive rate @ threshold", "false_positive_rate"),
    ("TTF RMSE, hours (true TTF < cap)", "ttf_rmse_hours"),
    ("Failures with an alert within the horizon", "failures_caught"),
    ("Share of failures caught", "failure_recall"),
    ("Median lead time of first alert, hours", "median_lead_hours"),
    ("Alerts (with cooldown)", "alerts"),
    ("False alerts per machine-day", "false_alerts_per_machine_day"),
]


def build_report(
    manifest: dict[str, Any],
    source: Optional[dict[str, Any]],
    seconds: float,
    calibration: Optional[dict[str, Any]] = None,
    policy: Optional[dict[str, Any]] = None,
    total_seconds: Optional[float] = None,
    curves: Optional[MaintenanceCurves] = None,
) -> Report:
    """The report; with `curves` (the test-period arrays) its figures too, written beside it."""
    m, b = manifest["metrics"]["model"], manifest["metrics"]["baseline"]
    m_raw, b_raw = manifest["metrics"].get("model_uncalibrated", {}), manifest["metrics"].get("baseline_uncalibrated", {})
    split, fp, tr, cfg = manifest["split"], manifest["data_fingerprint"], manifest["training"], manifest["train_config"]
    H = manifest["horizon_hours"]
    report = Report(
        "Maintenance model: training and evaluation",
        data={
            "model": MODEL_NAME,
            "run_id": manifest["run_id"],
            "metrics": manifest["metrics"],
            "data_fingerprint": fp,
            "split": split,
            "training": tr,
            "train_config": cfg,
            "life_stats": manifest["life_stats"],
            "rule_limits": manifest["rule_limits"],
            "features": manifest["features"]["sensors"],
            "source": source,
            "wall_seconds_before_save": round(seconds, 2),
            "wall_seconds": round(total_seconds, 2) if total_seconds is not None else None,
            "calibration": calibration,
            "confidence": manifest.get("confidence"),
            "policy": policy,
            "decision": manifest.get("decision"),
            "baselines": manifest.get("baselines"),
            "rule_rates": manifest.get("rule_rates"),
        },
    )
    trees = manifest["metrics"].get("trees")
    report.text(
        "Summary",
        f"Failure within {H:g} h and time to failure (capped at {manifest['ttf_cap_hours']:g} h), "
        f"evaluated on the last {split['test_fraction']:.0%} of the time range "
        f"({split['cutoff']} onwards): {split['test_readings']:,} readings, {split['test_failures']} failures. "
        f"Alert threshold {_threshold(m, manifest)} on the failure probability "
        f"(mean of {manifest['hyperparameters']['heads']} heads, calibrated), {_operating_point_words(manifest)}. "
        f"LSTM ROC AUC {_f(m['roc_auc'])} vs linear baseline {_f(b['roc_auc'])}"
        + (f" and gradient-boosted trees {_f(trees['roc_auc'])}" if trees else "")
        + f"; time-to-failure RMSE {_f(m['ttf_rmse_hours'], 1)} h vs {_f(b['ttf_rmse_hours'], 1)} h"
        + (f" and {_f(trees['ttf_rmse_hours'], 1)} h" if trees else "")
        + f"; failures caught {m['failures_caught']}/{m['failures']} vs {b['failures_caught']}/{b['failures']}"
        + (f" and {trees['failures_caught']}/{trees['failures']}" if trees else "") + ". "
        + _policy_summary(policy),
    )
    rows = [[label, m.get(key), m_raw.get(key), b.get(key), b_raw.get(key), *([trees.get(key)] if trees else [])]
            for label, key in [("Alert threshold (calibrated p)", "alert_threshold"), *_METRIC_ROWS]]
    report.table(
        "Test-period metrics",
        ["Metric", "LSTM", "LSTM (uncalibrated)", "Baseline (linear)", "Baseline (uncalibrated)",
         *(["Gradient-boosted trees (LightGBM)"] if trees else [])],
        rows,
        note=(
            "Per-reading metrics use readings whose label is known (censored tails within the horizon of the "
            "end of observation are excluded). A failure counts as caught when any reading within the horizon "
            "before it scores at or above its threshold (each model's own, chosen on the validation slice for the "
            "same false-alert budget; the uncalibrated columns at 0.5); lead time is from the first such reading. "
            "False alerts: "
            f"alerts (at most one per machine per {cfg['alert_cooldown_hours']:g} h, as live alerting) on readings "
            "with no failure within the horizon. LSTM and baseline: probabilities calibrated on the validation slice "
            "(see Calibration), as the scorer reports them; the uncalibrated columns are the raw outputs, inflated by "
            "pos_weight. Both baselines see the model's basic encoded inputs (scaled sensors, missing flags, type and "
            "mode; not its trend memory) with rolling-window statistics, and the model's training readings. The live scorer hands readings to the rules where the model is out of its depth: see "
            "'Decision policy on the test period' for what users get."
            + ("" if trees else " Gradient-boosted trees: not fitted (lightgbm not installed, or tree_baseline off).")
        ),
    )
    _operating_point_section(report, manifest)
    if calibration:
        _calibration_section(report, calibration, manifest)
    if policy:
        _policy_section(report, policy, manifest)
    elif policy is None:
        report.text("Decision policy on the test period", "Pending: evaluated once the version is written.")
    if curves is not None:
        add_figures(report, curves, policy, H, manifest["ttf_cap_hours"])
    elif policy is None:
        report.text("Figures", "Pending: drawn with the decision policy's evaluation.")
    mid = m.get("mid_life_start") or {}
    if mid.get("lives"):
        report.table(
            "Worker starting mid-life",
            ["Metric", "Zero state at cutoff", "State carried from life start"],
            [[label, mid["zero_state"][key], mid["carried_state"][key]] for label, key in _METRIC_ROWS[:5]],
            note=(
                f"The {mid['lives']} lives running at the cutoff, restarted there from a zero state (as a worker "
                f"that starts mid-life), scored after the first {cfg['warmup_steps']} readings: {mid['n']:,} readings, "
                f"{mid['positives']:,} positive."
            ),
        )
    report.kv(
        "Data",
        {
            "sha256 (readings)": fp["sha256"],
            "sha256 (outcomes)": fp["outcomes_sha256"],
            "readings": fp["readings"],
            "machines": fp["machines"],
            "outcomes": fp["outcomes"],
            "lives": manifest["life_stats"]["lives"],
            "lives ending in failure": manifest["life_stats"]["failures"],
            "lives ending in repair": manifest["life_stats"]["repairs"],
            "lives censored (data end / unexplained cycle reset)": manifest["life_stats"]["censored"],
            "outcomes attached to no life": manifest["life_stats"]["unattached_outcomes"],
            "time range": f"{fp['first_ts']} – {fp['last_ts']}",
            "median interval, minutes": manifest["interval_minutes"],
            "sensors used": manifest["features"]["sensors"],
            "sensors dropped (< coverage)": [s for s in manifest["sensor_coverage"] if s not in manifest["features"]["sensors"]],
            "machine types": manifest["features"]["machine_types"],
            "operating modes": manifest["features"]["operating_modes"],
        },
    )
    if source:
        report.kv("Source files", source)
    report.kv(
        "Split (time-ordered)",
        {
            "test cutoff": split["cutoff"],
            "validation cutoff": split["validation_cutoff"],
            "training readings (before cutoff)": split["train_readings"],
            "of which fitted / validation": f"{split['fit_readings']:,} / {split['validation_readings']:,}",
            "test readings": split["test_readings"],
            "training labels known / positive": f"{split['train_labelled']:,} / {split['train_positives']:,}",
            "test labels known / positive": f"{split['test_labelled']:,} / {split['test_positives']:,}",
            "failures in test period": split["test_failures"],
        },
        note="Labels of training readings are computed as known at the cutoff: a failure after it is not yet known, so "
        "readings within the horizon of it carry no label in training (no leak).",
    )
    report.kv(
        "Training",
        {
            "epochs run / best": f"{tr['epochs_run']} / {tr['best_epoch']}",
            "optimizer steps": tr["optimizer_steps"],
            "fit seconds": tr["fit_seconds"],
            "pos_weight": tr["pos_weight"],
            "training sequences (lives + mid-life starts)": split["training_sequences"],
            "mean / max head spread (test, calibrated heads)": [m.get("mean_head_spread"), m.get("max_head_spread")],
            "spread reference (validation quantile)": (manifest.get("confidence") or {}).get("spread_reference"),
            "hyperparameters": ", ".join(f"{k}={v}" for k, v in manifest["hyperparameters"].items()),
            "train loss by epoch": tr["train_loss"],
            "validation loss by epoch": tr["val_loss"],
        },
    )
    from stream_app.scoring.rules import DEFAULT_LIMITS

    limits, learned = manifest["rule_limits"], manifest["rule_limits_learned"]
    rates = manifest.get("rule_rates") or {}
    rows = []
    for sensor in sorted(set(limits) | set(learned)):
        default = DEFAULT_LIMITS.get(sensor, {})
        rows.append([
            sensor,
            learned.get(sensor, {}).get("low"),
            learned.get(sensor, {}).get("high"),
            limits.get(sensor, {}).get("low"),
            limits.get(sensor, {}).get("high"),
            rates.get(sensor),
            _fmt_limits(default),
        ])
    report.table(
        "Rule limits (fallback when the model cannot score or is out of its depth)",
        ["Sensor", "Learned low", "Learned high", "Manifest low", "Manifest high", "Rate limit per hour",
         "Physical default"],
        rows,
        note=(
            f"Learned from healthy training readings (more than {2 * H:g} h before a known failure, or more than "
            f"{2 * H:g} h before the end of observation of a life without one): quantiles {cfg['rule_quantiles'][0]} / "
            f"{cfg['rule_quantiles'][1]} widened by {cfg['rule_margin']:.0%} of their range; null with fewer than "
            f"{cfg['rule_min_values']} values. Both sides are learned because which way degradation moves a sensor is "
            "not known here. The manifest carries them except where the scorer has a physical default for that "
            "sensor and side: there it says null, so the default stays (a number would replace it). The user's "
            "rule_overrides win over both. Rate limits: the "
            f"{cfg.get('rule_rate_quantile', 0.9999)} quantile of healthy changes per hour between consecutive readings "
            f"at most {manifest.get('rule_rate_max_gap_hours') or 0:g} h apart, widened by "
            f"{cfg.get('rule_rate_margin', 0.25):.0%}. " + " ".join(manifest.get("rule_limit_notes") or [])
        ),
    )
    return report


def _calibration_section(report: Report, cal: dict[str, Any], manifest: dict[str, Any]) -> None:
    fit, br, base = cal["fit"], cal["brier"], cal["baseline"]
    split = manifest["split"]
    method = (
        f"Platt: p = sigmoid({cal['a']:.4f} * logit(raw mean of heads) + {cal['b']:.4f})"
        if cal.get("method") == "platt" else "identity (raw mean of heads)"
    )
    report.kv(
        "Calibration",
        {
            "method": method,
            "fitted on": f"validation slice ({split['validation_cutoff']} to the test cutoff): "
                         f"{fit['readings']:,} labelled readings, {fit['positives']:,} positive",
            "note": fit.get("note", "–"),
            "Brier, validation (raw → calibrated)": [br["validation"]["raw"], br["validation"]["calibrated"]],
            "Brier, test (raw → calibrated)": [br["test"]["raw"], br["test"]["calibrated"]],
            "baseline calibration": (
                f"Platt a={base['a']:.4f}, b={base['b']:.4f}" if base.get("method") == "platt" else "identity"
            ) + (f" ({base['fit']['note']})" if base["fit"].get("note") else ""),
            "baseline Brier, test (raw → calibrated)": [base["brier_test"]["raw"], base["brier_test"]["calibrated"]],
        },
        note="The training loss weights positives by pos_weight, which inflates raw probabilities; calibration maps "
        "them to observed rates. Brier = mean (p - y)^2, lower is better. Fitted on the validation slice only, "
        "never on the test period (the same slice chose the early-stopping epoch).",
    )
    raw, calibrated = cal["reliability_test"]["raw"], cal["reliability_test"]["calibrated"]
    rows = [
        [f"{r['low']:.1f}–{r['high']:.1f}", r["n"], r["mean_predicted"], r["observed"], c["n"], c["mean_predicted"], c["observed"]]
        for r, c in zip(raw, calibrated)
    ]
    report.table(
        "Calibration on the test period (reliability)",
        ["Predicted", "Readings (raw)", "Mean raw p", "Observed rate", "Readings (calibrated)", "Mean calibrated p",
         "Observed rate "],
        rows,
        note="Test readings with a known label, binned by predicted probability; a calibrated model has mean p "
        "equal to the observed rate of failure within the horizon in every bin.",
    )
    spread = cal.get("spread_vs_accuracy") or []
    if spread:
        conf = manifest.get("confidence") or {}
        report.table(
            "Head spread and decision accuracy (test period)",
            ["Spread / reference", "Readings", "Mean decisiveness", "Decision right", "Agreement"],
            [[r["band"], r["readings"], r["mean_decisiveness"], r["decision_right"], r["mean_agreement"]] for r in spread],
            note=f"Spread = std of the calibrated heads' probabilities; reference = its {conf.get('spread_quantile', 0.99):g} "
            f"quantile on the validation slice ({conf.get('spread_reference', float('nan')):.4g}). Decisiveness is what "
            "the calibrated probability promises (the chance the decision at the threshold is right); where the "
            "decisions are right less often than promised, the agreement factor "
            f"(1 - {SPREAD_PENALTY:g} x spread/reference) is what discounts them.",
        )


_POLICY_COLUMNS = [
    ("product", "Product (model + rules)"),
    ("model_only", "Model alone (no rules)"),
    ("rules_only", "Rules only"),
    ("baseline", "Linear baseline"),
    ("trees", "Gradient-boosted trees"),
]


def _threshold(metrics: dict[str, Any], manifest: dict[str, Any]) -> str:
    value = metrics.get("alert_threshold", manifest.get("alert_probability"))
    return "–" if value is None else f"{value:.3g}"


def _operating_point_words(manifest: dict[str, Any]) -> str:
    decision = manifest.get("decision") or {}
    if not decision:
        return "the configured alert_probability"
    words = f"chosen on the validation slice for {decision['false_alert_budget']:g} false alerts per machine-day"
    if decision.get("min_precision") is not None:
        words += f" and an alert precision of at least {decision['min_precision']:g}"
    return words


def _operating_point_section(report: Report, manifest: dict[str, Any]) -> None:
    """The validation curve each model's threshold was read from."""
    curves = {"LSTM": manifest.get("decision")}
    labels = {"linear": "Linear baseline", "trees": "Gradient-boosted trees"}
    for name, entry in (manifest.get("baselines") or {}).items():
        curves[labels.get(name, name)] = entry.get("decision")
    rows = []
    for label, decision in curves.items():
        if not decision:
            continue
        curve = decision.get("curve") or []
        at = next((c for c in curve if c[0] >= decision["threshold"] - 1e-12), None)
        rows.append([label, decision["threshold"], at[1] if at else None, at[2] if at else None, at[3] if at else None,
                     len(curve)])
    if not rows:
        return
    split = manifest["split"]
    report.table(
        "Operating point (validation slice)",
        ["Model", "Alert threshold", "False alerts / machine-day", "Failures alerted", "Alert precision",
         "Thresholds tried"],
        rows,
        note=(
            f"Each model's calibrated probabilities on the validation slice ({split['validation_cutoff']} to the test "
            "cutoff), every life streamed from its first reading, turned into alerts with the live cooldown; the "
            f"threshold is the lowest from which every higher one stays within "
            f"{(manifest.get('decision') or {}).get('false_alert_budget', float('nan')):g} false alerts per "
            "machine-day (MAINTENANCE__FALSE_ALERT_BUDGET; a worker with another budget picks its threshold from "
            "the same curve, stored in the manifest's \"decision\"). 1.0: no threshold met the budget."
        ),
    )


def _policy_summary(policy: Optional[dict[str, Any]]) -> str:
    if not policy:
        return ""
    p, s = policy["policies"]["product"], policy["settings"]
    gate = ("model decides unless out of its depth (competence < "
            if s.get("policy") == "operating point" else "model decides at confidence >= ")
    return (
        f"What users get ({gate}{s['min_confidence']:g}, rules otherwise; alert threshold "
        f"{s['alert_threshold']:.3g}; {s['alert_cooldown_hours']:g} h cooldown): {p['failures_caught']}/{p['failures']} "
        f"failures caught, median lead {_f(p['median_lead_hours'], 1)} h, {_f(p['false_alerts_per_machine_day'])} false "
        f"alerts per machine-day, alert precision {_f(p['alert_precision'])}, {_pct(p['rule_decided_share'])} of "
        "readings decided by rules."
    )


def _policy_section(report: Report, policy: dict[str, Any], manifest: dict[str, Any]) -> None:
    pol, s = policy["policies"], policy["settings"]
    columns = [(k, label) for k, label in _POLICY_COLUMNS if k in pol]
    rows = [
        ["Alert threshold", *[policy.get("thresholds", {}).get(k) for k, _ in columns]],
        ["Failures caught within the horizon", *[f"{pol[k]['failures_caught']} / {pol[k]['failures']}" for k, _ in columns]],
        ["Share of failures caught", *[pol[k]["failure_recall"] for k, _ in columns]],
        ["Median lead time, hours", *[pol[k]["median_lead_hours"] for k, _ in columns]],
        ["Alerts", *[pol[k]["alerts"] for k, _ in columns]],
        ["False alerts per machine-day", *[pol[k]["false_alerts_per_machine_day"] for k, _ in columns]],
        ["Alert precision (failure within the horizon)", *[pol[k]["alert_precision"] for k, _ in columns]],
        ["Share of readings decided by rules", *[pol[k]["rule_decided_share"] for k, _ in columns]],
        ["Readings decided right (before the cooldown)", *[pol[k].get("decisions_right") for k, _ in columns]],
    ]
    by_source = policy["product_alerts_by_source"]
    gate = ("the model decides unless its competence (agreement x data quality x warm-up x familiarity) is below "
            if s.get("policy") == "operating point" else "the model decides at confidence >= ")
    report.table(
        "Decision policy on the test period",
        ["Metric", *[label for _, label in columns]],
        rows,
        note=(
            f"Model version {policy['model_version']} loaded by the live scorer (MaintenanceScorer.from_version): "
            f"{gate}{s['min_confidence']:g} and alerts at p >= {s['alert_threshold']:.3g}; a "
            f"{s['alert_cooldown_hours']:g} h cooldown; the {policy['streamed_lives']} lives that reach into the test "
            f"period ({policy['streamed_readings']:,} readings) streamed from their first reading in event-time order, "
            f"{policy['batch_size']} readings per batch, outcomes resetting machines as the outcomes agent does. Counted "
            f"on the {policy['test_readings']:,} test readings. Product alerts: {by_source['model']} by the model, "
            f"{by_source['rule']} by the rules. Model alone and baselines: calibrated probability >= their own "
            "threshold, same cooldown. Rules only: the scorer without a model. Alerts are the ones "
            "emitted (after the cooldown); precision counts alerts whose label is known. Scoring took "
            f"{policy['scoring_seconds']['product']:g} s (product, explanations skipped) + "
            f"{policy['scoring_seconds']['rules_only']:g} s (rules only)."
        ),
    )
    report.table(
        "Confidence reliability (test period)",
        ["Confidence", "Readings", "Decided by model", "Mean confidence", "Model decision right",
         "… where the model decided", "Rules decision right where rules decided"],
        [
            [r["band"], r["readings"], r["decided_by_model"], r["mean_confidence"], r["model_decision_right"],
             r["model_decision_right_where_model_decided"], r["rules_decision_right_where_rules_decided"]]
            for r in policy["reliability"]
        ],
        note=(
            "Every test reading with a known label, by the confidence the scorer reported. 'Model decision right': "
            f"the model's own decision (alert when p >= {s['alert_threshold']:.3g}) matched the label (failure within "
            "the horizon or not), whether or not the model decided. A meaningful confidence has the share right "
            "close to the mean confidence (it can be higher: data quality, warm-up and agreement only lower "
            "confidence). The last column compares the rules' decisions on the readings handed to them."
        ),
    )


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _fmt_limits(sides: dict[str, Optional[float]]) -> str:
    parts = [f"{'<' if side == 'low' else '>'} {v:g}" for side, v in sides.items() if v is not None]
    return ", ".join(parts) or "–"


def _f(value: Optional[float], digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
