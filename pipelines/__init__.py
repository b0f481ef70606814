"""Heads and fit/evaluate/few-shot flows on cached features."""
