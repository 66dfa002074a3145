"""Local linear-Gaussian controllers and the KL-constrained LQR that improves them."""
from .lin_gauss import LinearGaussianController, generate_noise, traj_kl
from .lqr import (LQRResult, QuadraticCost, backward_pass, estimate_cost, expected_cost,
                  forward_pass, kl_constrained_lqr)

__all__ = ["LinearGaussianController", "generate_noise", "traj_kl", "LQRResult", "QuadraticCost",
           "backward_pass", "estimate_cost", "expected_cost", "forward_pass", "kl_constrained_lqr"]
