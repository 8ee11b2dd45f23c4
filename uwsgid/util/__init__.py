"""Leaf helpers every layer may use: logging, the hook registry."""
