"""The drop-in worker daemon: consumes invocations and runs them in warm sandboxes."""
