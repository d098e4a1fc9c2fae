"""Real-time scoring of industrial event streams on Kafka."""

__version__ = "0.1.0"
