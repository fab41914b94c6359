"""boltzflow.samplers."""
