"""Helpers the other packages share: atomic file writes, CPU worker threads, stage timing,
torchrun plumbing and resizing. Nothing here imports the rest of panosamic."""
