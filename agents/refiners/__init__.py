"""Refiners: rewrite answered items (an answer's format, an instruction) before curation. The round runs
every refiner the config lists in `synthesis.refine`, in order. `reflection` (Selective Reflection-Tuning's
teacher step) writes each item's reflected variants; the `selective_reflection` selector picks among them."""
