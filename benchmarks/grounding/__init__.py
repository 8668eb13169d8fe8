"""GUI grounding benchmarks: ScreenSpot, ScreenSpot-v2, ScreenSpot-Pro, OSWorld-G, and
grounding data generated from our own environments (see docs/grounding.md)."""
