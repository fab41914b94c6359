"""boltzflow.systems."""
