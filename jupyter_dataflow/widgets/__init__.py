"""Notebook widgets (progress bars, lineage views) that render what `Flow` reports.

Widgets subscribe to reconciler events or read `Flow` payloads; they never run work
or touch the store themselves.
"""
