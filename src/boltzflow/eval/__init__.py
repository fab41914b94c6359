"""boltzflow.eval."""
