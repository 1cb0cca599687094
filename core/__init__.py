"""The lowest layer: what agents/, trainers/ and loop/ may all import."""
