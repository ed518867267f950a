"""Admission: fleet-wide concurrency leases and the sync leases a caller keeps."""
