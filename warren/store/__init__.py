"""Everything that keeps Warren's own state in Redis, behind one error edge (redis.py)."""
