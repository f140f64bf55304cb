"""Isolated torch/library environments, and the matrix that freezes a target in each."""
