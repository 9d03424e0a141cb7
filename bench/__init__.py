"""Benchmarks: each module has run(quick: bool) -> dict, printed as JSON by `edge-agent bench NAME`."""
