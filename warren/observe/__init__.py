"""Observing a fleet: Prometheus metrics, the probe server and the collectors that fill them."""
