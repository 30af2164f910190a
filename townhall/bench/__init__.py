"""Benchmarks: one scripted debate (`script`), run in-process (`local`) or through an
OpenAI-compatible server (`server`), printed by `report` so the figures compare.

Nothing here is imported by the app itself: `townhall bench` loads these modules.
"""
