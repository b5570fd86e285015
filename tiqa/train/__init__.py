"""Training: pure jitted steps, the shared loop (sharding, checkpoints, logging) and the phases."""
