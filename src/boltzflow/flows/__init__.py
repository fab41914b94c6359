"""Invertible maps z -> x, base distributions and flows. Flows know no physics.

One coupling layer (:class:`Coupling`) takes any elementwise map (:mod:`boltzflow.flows.elementwise`:
affine, RQ spline, circular RQ spline; :mod:`boltzflow.flows.smooth`: C-infinity mixtures) and a conditioner
(:mod:`boltzflow.flows.conditioners`); RealNVP, the torus flow and the internal-coordinate flows are built
from it.
"""

from boltzflow.flows.base import StandardNormal
from boltzflow.flows.core import Affine, Compose, Inverse, Transform
from boltzflow.flows.coupling import Coupling
from boltzflow.flows.flow import Flow, FlowSample
from boltzflow.flows.internal import InternalCoordinates
from boltzflow.flows.realnvp import RealNVPConfig, affine_coupling, n_parameters, realnvp
from boltzflow.flows.splines import rq_spline, spline_parameters
from boltzflow.flows.torus import CircularShift, UniformTorus, circular_spline_coupling, circular_spline_flow
from boltzflow.flows.zmatrix import ZMatrix, build_zmatrix

__all__ = [
    "Affine",
    "CircularShift",
    "Compose",
    "Coupling",
    "Flow",
    "FlowSample",
    "InternalCoordinates",
    "Inverse",
    "RealNVPConfig",
    "StandardNormal",
    "Transform",
    "UniformTorus",
    "ZMatrix",
    "affine_coupling",
    "build_zmatrix",
    "circular_spline_coupling",
    "circular_spline_flow",
    "n_parameters",
    "realnvp",
    "rq_spline",
    "spline_parameters",
]
