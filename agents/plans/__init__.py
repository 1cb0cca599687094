"""Allocation plans: who gets how many new items in a round, and why (one module per family of plans)."""
