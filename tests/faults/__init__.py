"""The fault suite: each production fault as a test with a history and a checker."""
