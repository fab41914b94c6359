"""Invertible maps z -> x, base distributions and flows. Flows know no physics."""

from boltzflow.flows.base import StandardNormal
from boltzflow.flows.core import Affine, Compose, Inverse, Transform
from boltzflow.flows.coupling import AffineCoupling
from boltzflow.flows.flow import Flow, FlowSample
from boltzflow.flows.realnvp import RealNVPConfig, n_parameters, realnvp

__all__ = [
    "Affine",
    "AffineCoupling",
    "Compose",
    "Flow",
    "FlowSample",
    "Inverse",
    "RealNVPConfig",
    "StandardNormal",
    "Transform",
    "n_parameters",
    "realnvp",
]
