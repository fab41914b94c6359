"""boltzflow: Boltzmann generators — normalizing flows that sample p(x) ∝ exp(-u(x))."""

__version__ = "0.1.0"

__all__ = ["__version__"]
