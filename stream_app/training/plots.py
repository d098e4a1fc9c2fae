"""Figures of the training reports: shared drawing helpers and the guard that keeps a figure's
failure out of the training run.

Figures are drawn headless on matplotlib's Agg canvas, each `Figure` its own object (no pyplot
state shared between reports or threads), at a fixed size and dpi, so the same arrays give the
same PNG. A figure whose data is missing raises `MissingData`; `add_figure` turns that into a
sentence in the report, and any other error into a logged warning and a note, never a failed run.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stream_app.training.report import Report

logger = logging.getLogger(__name__)

DPI = 100
# One colour per role, the same in every report: the model, then comparisons in a fixed order.
MODEL_COLOUR = "#1f77b4"
COMPARISON_COLOURS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
MISSED_COLOUR = "#d62728"
MAX_CURVE_POINTS = 2000  # more vertices than pixels only slow the drawing down


class MissingData(Exception):
    """The figure's data is not there (no failures, no verdicts...); the message says what,
    as a sentence for the report."""


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1) -> tuple[Figure, list[Axes]]:
    """A figure on its own Agg canvas, with its axes in reading order."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, list(axes.ravel())


def add_figure(report: Report, heading: str, image: str, draw: Callable[[], Figure], note: str = "") -> None:
    """Draw a figure into `report` as `image`; missing data or a drawing error leaves a sentence
    under the heading instead (and a warning in the log for an error)."""
    try:
        fig = draw()
    except MissingData as why:
        report.figure_skipped(heading, image, f"Not drawn: {why}")
    except Exception as exc:  # a figure must never fail a training run that otherwise succeeded
        logger.warning("report figure %s could not be drawn", image, exc_info=True)
        report.figure_skipped(heading, image, f"Not drawn: drawing failed ({type(exc).__name__}: {exc}); see the "
                                              "training log.")
    else:
        report.figure(heading, image, fig, note)


# --- curves ------------------------------------------------------------------------------------------
def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) at every distinct score, from (0, 0) to (1, 1);
    needs both classes."""
    pos, s = _labels_and_scores(y, score)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise MissingData("the test period has only one class of label.")
    tp, fp = _cumulative_at_thresholds(pos, s)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct score, highest score first."""
    pos, s = _labels_and_scores(y, score)
    n_pos = int(pos.sum())
    if n_pos == 0:
        raise MissingData("the test period has no positive label.")
    tp, fp = _cumulative_at_thresholds(pos, s)
    return tp / n_pos, tp / (tp + fp)


def _labels_and_scores(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    keep = np.isfinite(score)
    return y[keep] > 0.5, score[keep]


def _cumulative_at_thresholds(pos: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    s_sorted, p_sorted = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]  # one point per tied score
    return np.cumsum(p_sorted)[last].astype(np.float64), np.cumsum(~p_sorted)[last].astype(np.float64)


def thin(*arrays: np.ndarray, limit: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, ...]:
    """Every k-th point of aligned arrays (first and last kept), at most about `limit` of them."""
    n = len(arrays[0])
    if n <= limit:
        return arrays
    keep = np.unique(np.r_[np.linspace(0, n - 1, limit).astype(int), n - 1])
    return tuple(a[keep] for a in arrays)


def sample_indices(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """At most `limit` of range(n), drawn by a fixed seed (the same points on every run), sorted."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def colours(n: int) -> list[str]:
    """The model's colour, then the comparisons'."""
    return [MODEL_COLOUR, *COMPARISON_COLOURS][:n]
