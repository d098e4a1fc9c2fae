"""Model lifecycle: the promotion gate (gate.py), live accuracy counters written by workers
(live.py), and promotion through the gate with its history (promotion.py)."""
