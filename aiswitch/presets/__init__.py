"""Presets: named environments for shells and agent children."""
