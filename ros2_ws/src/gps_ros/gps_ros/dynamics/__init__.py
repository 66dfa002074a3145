"""Linear-Gaussian dynamics fitting with a GMM prior (Levine & Abbeel 2014)."""
from .gmm import GMM
from .linear_gaussian import (
    LinearGaussianDynamics,
    condition_joint_gaussian,
    eval_prior,
    fit_conditional_gaussians,
    fit_linear_gaussian,
    joint_transition_points,
)
from .model_prior import ModelPrior, ModelStep
from .prior import DynamicsFitter, DynamicsPriorGMM, PolicyPriorGMM

__all__ = [
    "LinearGaussianDynamics",
    "fit_linear_gaussian",
    "joint_transition_points",
    "condition_joint_gaussian",
    "eval_prior",
    "fit_conditional_gaussians",
    "GMM",
    "DynamicsPriorGMM",
    "PolicyPriorGMM",
    "DynamicsFitter",
    "ModelPrior",
    "ModelStep",
]
