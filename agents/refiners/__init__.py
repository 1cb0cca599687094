"""Refiners: rewrite answered items (an answer's format, an instruction) before curation. The round runs
every refiner the config lists in `synthesis.refine`, in order; none ships yet, and the stage is tested
with a refiner the tests register (tests/loop/test_plugins.py)."""
