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
    kp, kd = _as_matrix(stiffness, dU, "stiffness"), _as_matrix(damping, dU, "damping")
    return joint_feedback_controller(T, dX, pos_idx, vel_idx, -kp, -kd, kp @ q0, variance)


def _as_matrix(v, dU: int, name: str) -> np.ndarray:
    v = np.asarray(v, float)
    if v.ndim == 0 or v.shape == (dU,):
        v = np.diag(np.broadcast_to(v, (dU,)))
    if v.shape != (dU, dU):
        raise ValueError(f"{name} must be a scalar, ({dU},) or ({dU}, {dU}); got {v.shape}")
    return v


def joint_feedback_controller(T: int, dX: int, pos_idx, vel_idx, Kq: np.ndarray, Kv: np.ndarray,
                              k: np.ndarray, variance) -> LinearGaussianController:
    """u_t = Kq q_t + Kv q̇_t + k + N(0, Σ) for every t (Kq, Kv (dU, dU), k (dU,)): a controller
    on the joint state only, e.g. a PD hold in any command interface
    (:meth:`gps_ros.robot.actuation.Actuation.pd_gains`)."""
    k = np.asarray(k, dtype=float)
    dU = k.shape[0]
    var = _as_matrix(variance, dU, "variance")
    if np.any(np.linalg.eigvalsh(0.5 * (var + var.T)) <= 0):
        raise ValueError("initial controller variance must be positive definite")
    K = np.zeros((T, dU, dX))
    K[:, :, np.asarray(pos_idx)] = Kq
    K[:, :, np.asarray(vel_idx)] = Kv
    return LinearGaussianController(K, np.broadcast_to(k, (T, dU)).copy(),
                                    np.broadcast_to(var, (T, dU, dU)).copy())


def lqr_init_controller(Fm: np.ndarray, fv: np.ndarray, x0: np.ndarray, cost,
                        prev: LinearGaussianController, epsilon: float,
                        iterations: int = 5) -> LinearGaussianController:
    """A first C-step taken on a guessed linear model instead of on fitted dynamics.

    ``Fm`` (dX, dX+dU) and ``fv`` (dX,) give x' = Fm [x; u] + fv at every step (noise-free);
    ``x0`` (dX,) is the start state, ``cost`` any :class:`gps_ros.cost.Cost`, ``prev`` the
    controller the step starts from (the PD hold) and ``epsilon`` its KL bound (total over t), as
    in LQR-FLM's C-step.  The cost is expanded to second order along the model's mean trajectory
    under the current new controller and the KL-constrained LQR re-solved, ``iterations`` times, so
    that the expansion sits where the step ends (the bound stays on the KL to ``prev``).  This is
    the idea of the original GPS code's ``init_lqr`` with a model from the robot's description
    (:func:`gps_ros.task.linear_model`) and the algorithm's own trust region, so the plan cannot
    leave the region where the model holds any faster than LQR-FLM's steps would.
    """
    from ..dynamics.linear_gaussian import LinearGaussianDynamics
    from .lqr import QuadraticCost, forward_pass, kl_constrained_lqr

    x0 = np.asarray(x0, float)
    T, dU, dX = prev.K.shape
    F = np.zeros((T, dX, dX + dU))
    F[:-1] = Fm
    f = np.zeros((T, dX))
    f[:-1] = fv
    tiny = 1e-10 * np.eye(dX)
    dyn = LinearGaussianDynamics(F, f, np.broadcast_to(tiny, (T, dX, dX)).copy(), x0, tiny.copy())
    mu = forward_pass(F[None], f[None], dyn.dyn_covar[None], x0[None], dyn.x0sigma[None],
                      prev.K[None], prev.k[None], prev.pol_covar[None])[0][0]
    ctrl, eta = prev, None
    for _ in range(iterations):
        X, U = mu[None, :, :dX], mu[None, :, dX:]
        qc = QuadraticCost.from_derivatives(X, U, cost.eval(X, U))
        res = kl_constrained_lqr([dyn], [qc], [prev], [epsilon], eta0=eta)[0]
        ctrl, eta, mu = res.controller, [res.eta], res.mu     # res.mu: the new step's marginals
    return ctrl
