"""Selectors: keep or drop curated items against the pool, the evaluation sets and the student (dedup,
decontamination, IFD)."""
