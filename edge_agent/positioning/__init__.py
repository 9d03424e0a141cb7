"""Positioning from phone scans (issue 16): one scan (beacon id -> RSSI) -> a place on the map.

Pure logic: the grid, scans, the fingerprint models, the path-loss fallback, the per-session
smoothing window and the evaluation take arrays and return values; only `dataset.py` (the survey
CSV) and `cli.py` read files.
"""
