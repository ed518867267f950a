"""Handlers and a process harness for the fleet's integration tests."""
