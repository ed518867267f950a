"""Batching for event source mappings: collect, filter, invoke, judge, retry, give up."""
