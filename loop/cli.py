"""The `gaploop` command line (placeholder replaced below)."""
