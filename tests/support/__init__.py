"""What the tests share: process harnesses, broker fixtures, and handler code (handlers/)."""
