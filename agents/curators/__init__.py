"""Curators: drop answered items with a reason (the task's verification, a model's quality rating)."""
