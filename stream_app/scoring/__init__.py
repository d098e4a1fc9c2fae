"""Scorers: events in, predictions, alerts and explanations out (no Kafka in here)."""
