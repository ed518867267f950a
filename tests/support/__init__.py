"""What the tests share: process harnesses, broker fixtures, and the handler code under handlers/."""
