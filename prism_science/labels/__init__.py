"""Behavior labels: interval tables, per-frame matrices, import and export of other formats."""
