"""Linearise the global policy around the samples: π_θ(u | o_t) ≈ N(K̄_t x_t + k̄_t, Σ̄_t).

MDGPS (Montgomery & Levine 2016) constrains each local controller against this time-varying
linear-Gaussian fit of the global policy instead of against the previous controller.  For every t
the policy's mean actions at the N sampled states are regressed on those states (normal-inverse-
Wishart posterior with a GMM prior over all recent (x, u) pairs of the policy, as for the
dynamics), and the policy's own covariance is added to the regression residual.
"""
from __future__ import annotations

import numpy as np

from ..control import LinearGaussianController
from ..dynamics import eval_prior, fit_conditional_gaussians


def linearize_policy(X: np.ndarray, U_pi: np.ndarray, pol_covar: np.ndarray, prior=None,
                     regularization: float = 1e-6) -> LinearGaussianController:
    """Fit K̄ (T, dU, dX), k̄ (T, dU), Σ̄ (T, dU, dU) to the policy's actions along samples.

    Args:
        X: (N, T, dX) sampled states.
        U_pi: (N, T, dU) the global policy's mean actions at those states (from its observations).
        pol_covar: (dU, dU) or (T, dU, dU) the policy's action covariance.
        prior: ``None`` or a :class:`gps_ros.dynamics.PolicyPriorGMM` (already updated).
        regularization: added to the state block's diagonal before conditioning.
    """
    X = np.asarray(X, dtype=np.float64)
    U_pi = np.asarray(U_pi, dtype=np.float64)
    N, T, dX = X.shape
    dU = U_pi.shape[2]
    if U_pi.shape[:2] != (N, T):
        raise ValueError(f"X {X.shape} and U_pi {U_pi.shape} disagree on (N, T)")
    P = np.swapaxes(np.concatenate([X, U_pi], axis=2), 0, 1)                    # (T, N, dX+dU)
    params = None if prior is None else eval_prior(prior, dX, dU, P)
    K, k, S = fit_conditional_gaussians(P, dX, params, regularization)
    cov = S + np.broadcast_to(np.asarray(pol_covar, dtype=np.float64), (T, dU, dU))
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2)) + 1e-10 * np.eye(dU)
    return LinearGaussianController(K, k, cov)


def linearize_policy_jacobian(X: np.ndarray, U_pi: np.ndarray, J: np.ndarray,
                              pol_covar: np.ndarray) -> LinearGaussianController:
    """Linearise with the network's own derivatives: K̄_t = mean_i ∂μ/∂x(x_t^i), k̄_t such that
    the fit is exact on average, Σ̄_t = Σ_π + the residual covariance of the linear fit.

    Unlike the regression of :func:`linearize_policy`, this needs no N > dX samples and gives the
    policy's true feedback in directions the samples did not excite (where a regression on 5
    samples returns whatever the prior says; a local controller KL-constrained against such gains
    inherits them and can be unstable on the robot).  The image path's dependence on the state is
    not included (frames are held fixed).

    Args:
        X: (N, T, dX) states. U_pi: (N, T, dU) the policy's mean actions there.
        J: (N, T, dU, dX) ∂μ_θ/∂x at each sample. pol_covar: (dU, dU) or (T, dU, dU).
    """
    X = np.asarray(X, dtype=np.float64)
    U_pi = np.asarray(U_pi, dtype=np.float64)
    N, T, dX = X.shape
    dU = U_pi.shape[2]
    K = J.mean(axis=0)                                                     # (T, dU, dX)
    k = (U_pi - np.einsum("tux,ntx->ntu", K, X)).mean(axis=0)              # (T, dU)
    R = U_pi - np.einsum("tux,ntx->ntu", K, X) - k                         # (N, T, dU)
    S = np.einsum("ntu,ntv->tuv", R, R) / max(N - 1, 1)
    cov = S + np.broadcast_to(np.asarray(pol_covar, dtype=np.float64), (T, dU, dU))
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2)) + 1e-10 * np.eye(dU)
    return LinearGaussianController(K, k, cov)
