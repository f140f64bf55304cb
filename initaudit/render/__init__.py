"""Output: one module per format and report (text, markdown, json, github, html); never imported by the core."""
