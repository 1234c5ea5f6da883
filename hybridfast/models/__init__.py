"""Model artifacts: offline import of multilingual-e5-small, vocabulary pruning, resolution."""
