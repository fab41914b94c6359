"""boltzflow.experiments."""
