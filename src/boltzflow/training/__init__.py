"""boltzflow.training."""
