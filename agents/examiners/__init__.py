"""Examiners: turn a round's graded probes into a weakness profile (and may grow the taxonomy)."""
