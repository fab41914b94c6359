"""Invertible maps z -> x, base distributions and flows. Flows know no physics."""

from boltzflow.flows.base import StandardNormal
from boltzflow.flows.core import Affine, Compose, Inverse, Transform
from boltzflow.flows.coupling import AffineCoupling
from boltzflow.flows.flow import Flow, FlowSample
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.realnvp import RealNVPConfig, n_parameters, realnvp
from boltzflow.flows.splines import rq_spline, spline_parameters
from boltzflow.flows.torus import CircularShift, CircularSplineCoupling, UniformTorus, circular_spline_flow
from boltzflow.flows.zmatrix import ZMatrix, build_zmatrix

__all__ = [
    "Affine",
    "AffineCoupling",
    "CircularShift",
    "CircularSplineCoupling",
    "Compose",
    "Flow",
    "FlowSample",
    "InternalCoordinates",
    "Inverse",
    "RealNVPConfig",
    "StandardNormal",
    "Transform",
    "UniformTorus",
    "ZMatrix",
    "build_zmatrix",
    "circular_spline_flow",
    "n_parameters",
    "realnvp",
    "rq_spline",
    "spline_parameters",
]
