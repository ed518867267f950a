"""Running one handler safely: fork server, limits, deadline kill, log capture, warm reuse."""
