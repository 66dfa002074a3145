"""Linear-Gaussian dynamics fitting with a GMM prior (Levine & Abbeel 2014)."""
from .gmm import GMM
from .linear_gaussian import (
    LinearGaussianDynamics,
    condition_joint_gaussian,
    fit_linear_gaussian,
    joint_transition_points,
)
from .prior import DynamicsFitter, DynamicsPriorGMM

__all__ = [
    "LinearGaussianDynamics",
    "fit_linear_gaussian",
    "joint_transition_points",
    "condition_joint_gaussian",
    "GMM",
    "DynamicsPriorGMM",
    "DynamicsFitter",
]
