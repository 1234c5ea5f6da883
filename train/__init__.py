"""Training: config, hybrid batches, global-negative loss, accelerate + DeepSpeed loop."""
