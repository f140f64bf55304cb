"""pytest plugin (filled in by the diff/check work)."""
