"""Initial local controllers."""
from __future__ import annotations

import numpy as np

from .lin_gauss import LinearGaussianController


def pd_hold_controller(T: int, dX: int, q0: np.ndarray, pos_idx: np.ndarray, vel_idx: np.ndarray,
                       stiffness: np.ndarray, damping: np.ndarray,
                       variance: np.ndarray) -> LinearGaussianController:
    """PD hold around q0: u_t = Kp (q0 − q_t) − Kd q̇_t + N(0, Σ), for every t.

    q0 (dU,) the pose to hold; pos_idx / vel_idx (dU,) the state indices of joint positions and
    velocities.  ``stiffness``, ``damping`` and ``variance`` are scalars, per-joint vectors (dU,) or
    full (dU, dU) matrices (e.g. gains premultiplied by the joint-space inertia, which decouples
    the joints; Σ must then be symmetric positive definite).
    """
    q0 = np.asarray(q0, dtype=float)
    dU = q0.shape[0]

    def as_matrix(v, name):
        v = np.asarray(v, float)
        if v.ndim <= 1:
            v = np.diag(np.broadcast_to(v, (dU,)))
        if v.shape != (dU, dU):
            raise ValueError(f"{name} must be a scalar, ({dU},) or ({dU}, {dU}); got {v.shape}")
        return v

    kp, kd = as_matrix(stiffness, "stiffness"), as_matrix(damping, "damping")
    var = as_matrix(variance, "variance")
    if np.any(np.linalg.eigvalsh(0.5 * (var + var.T)) <= 0):
        raise ValueError("initial controller variance must be positive definite")
    K = np.zeros((T, dU, dX))
    K[:, :, np.asarray(pos_idx)] = -kp
    K[:, :, np.asarray(vel_idx)] = -kd
    k = np.broadcast_to(kp @ q0, (T, dU)).copy()
    cov = np.broadcast_to(var, (T, dU, dU)).copy()
    return LinearGaussianController(K, k, cov)
