"""Constrained mass transport (paper 002): data-free training of a Boltzmann generator by a sequence of
KL projections under a trust region and an entropy-decay constraint, and the baselines run in the same harness."""
