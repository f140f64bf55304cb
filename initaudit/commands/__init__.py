"""The top layer: one module per command; each parses nothing itself (click does), calls the core, renders."""
