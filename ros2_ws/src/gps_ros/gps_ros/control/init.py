"""Initial local controllers."""
from __future__ import annotations

import numpy as np

from .lin_gauss import LinearGaussianController


def pd_hold_controller(T: int, dX: int, q0: np.ndarray, pos_idx: np.ndarray, vel_idx: np.ndarray,
                       stiffness: np.ndarray, damping: np.ndarray,
                       variance: np.ndarray) -> LinearGaussianController:
    """PD hold around q0: u_t = Kp (q0 − q_t) − Kd q̇_t + N(0, diag(variance)), for every t.

    q0 (dU,) the pose to hold; pos_idx / vel_idx (dU,) the state indices of joint positions and
    velocities; stiffness, damping, variance per joint (dU,) or scalars.
    """
    q0 = np.asarray(q0, dtype=float)
    dU = q0.shape[0]
    kp = np.broadcast_to(np.asarray(stiffness, float), (dU,))
    kd = np.broadcast_to(np.asarray(damping, float), (dU,))
    var = np.broadcast_to(np.asarray(variance, float), (dU,))
    if np.any(var <= 0):
        raise ValueError("initial controller variance must be positive")
    K = np.zeros((T, dU, dX))
    K[:, np.arange(dU), np.asarray(pos_idx)] = -kp
    K[:, np.arange(dU), np.asarray(vel_idx)] = -kd
    k = np.broadcast_to(kp * q0, (T, dU)).copy()
    cov = np.broadcast_to(np.diag(var), (T, dU, dU)).copy()
    return LinearGaussianController(K, k, cov)
