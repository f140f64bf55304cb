"""initaudit: audit and freeze how PyTorch models get their initial weights."""

__version__ = "0.1.0"
