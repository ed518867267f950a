"""Handlers and a small harness for the event source mapping tests."""
