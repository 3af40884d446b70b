"""Evaluation: exact grouped metrics, cold-start slices and full-ranking evaluation (no Lightning, no data/)."""
