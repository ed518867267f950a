"""Admission and batching: concurrency leases, batches, filters, retries, destinations."""
