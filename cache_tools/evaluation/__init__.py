"""Offline evaluation of the hit decision on labelled pairs: cache simulation, metrics, plots."""
