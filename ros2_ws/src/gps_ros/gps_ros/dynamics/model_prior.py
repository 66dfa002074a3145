"""The robot's rigid-body model as the dynamics prior (``dynamics.type: model_prior``).

The GMM prior (:mod:`.prior`) and the network prior (:mod:`.nn_prior`) learn the whole transition
from the trials.  But most of it is known before any trial: the URDF gives the arm's rigid-body
dynamics, the command interface says what a command does (:mod:`gps_ros.robot.actuation`), and the
end-effector points follow from the joints by forward kinematics.  This prior uses that model for
what it knows and a learned prior for what it does not (friction, a payload, motor dynamics, wrong
inertias), fitted on the model's *residuals*.

The model step (:class:`ModelStep`)
    ``f(x, u)``: the state after one control period from state ``x`` under command ``u``, with its
    Jacobian ``∂f/∂[x; u]``, per command interface as the simulated arm (:mod:`gps_ros.sim.arm`) and
    a ros2_control robot run it:

    * ``effort``: ``M(q) q̈ = clip(u) − d q̇ − C(q, q̇) q̇`` (gravity compensated: the model has zero
      gravity), integrated over the period's ``n_substeps`` physics substeps with the
      semi-implicit Euler step PyBullet takes (``q̇ += h q̈``, then ``q += h q̇``; the damping from
      the substep's start velocity); the Jacobian is propagated exactly through the substeps with
      Pinocchio's analytic ABA derivatives;
    * ``velocity``: the joints move at the (clipped) commanded velocity, ``q' = q + dt u``,
      ``q̇' = u``;
    * ``position``: the joints move to the (clipped) commanded position at constant speed, capped
      at the velocity limit: ``q̇' = clip((u − q) / dt, ±v_max)``, ``q' = q + dt q̇'``;
    * the EE points: ``p'_rel = p_rel + FK(q') − FK(q)`` (so no condition target is needed) and
      ``ṗ' = J(q') q̇'``; their Jacobian analytically, except the derivative of ``J(q) w`` with
      respect to ``q`` (central differences of the exact point Jacobian).

    Its Pinocchio objects are not pickled: they are rebuilt lazily from the agent section (and the
    URDF text, where one was given), so the prior pickles with the run state.

The prior (:class:`ModelPrior`)
    A learned prior -- :class:`ResidualPriorGMM` (``dynamics.prior``) or :class:`ResidualPriorNN`
    (``dynamics.nn``) -- is fitted on residual tuples ``[x_t, u_t, r_t]``, ``r_t = x_{t+1} −
    f(x_t, u_t)`` of the buffered trials of all conditions.  For the fit of one time step it is
    evaluated on that step's residual tuples, giving a normal-inverse-Wishart prior
    ``(mu0_r, Phi_r, m, n0)`` over ``[z; r]`` (``z = [x; u]``), and mapped back through the model's
    linearisation at the step's mean ``z̄``, ``x' = r + f(z̄) + J (z − z̄)``::

        T = [[I, 0], [J, I]],   mu0 = T mu0_r + [0; f(z̄) − J z̄],   Phi = T Phi_r Tᵀ   (m, n0 as is)

    The prior's slopes are then ``J + Σrz Σzz⁻¹``: the model's Jacobian plus what the learned prior
    knows about the residual.  In the directions the trials explored the residual statistics correct
    the model; in those they never explored the residual has no spread and the model's ``J`` fills
    them -- which the GMM alone cannot do (it has no information there).  With an exact model the
    residual is the simulator's round-off and the fit is the model's linearisation; with a wrong one
    (30 % heavier links, a payload) the residual is the model error and the learned prior fits it.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from .nn_prior import DynamicsPriorNN
from .prior import DynamicsFitter, DynamicsPriorGMM, gmm_prior_kwargs, nn_prior_kwargs

log = logging.getLogger(__name__)

__all__ = ["ModelStep", "ModelPrior", "ResidualPriorGMM", "ResidualPriorNN", "niw_through_model",
           "model_fitter", "scaled_inertia_urdf", "payload_urdf"]

#: relative step of the central differences of the point Jacobian (times max(1, |q|))
_FD_STEP = 1e-6


class ModelStep:
    """One control period of the task's robot model: ``f(x, u)`` and ``∂f/∂[x; u]`` (see the module
    docstring).

    Args:
        agent: the agent section (robot, rates, damping, limits, EE points, conditions).

        urdf: the URDF (text, a file or a package:// URI) in place of ``agent.robot.urdf`` (a
            node's robot_description, ``dynamics.model_urdf``, a deliberately wrong model).
        task: an already built :class:`~gps_ros.task.TaskModel` of ``agent`` (and ``urdf``) to
            share; it is not pickled (rebuilt from ``agent`` and ``urdf``).
    """

    def __init__(self, agent, urdf: Optional[str] = None, task=None) -> None:
        self.agent = agent
        self.urdf = urdf
        self._task = task
        self._dyn = None

    # ------------------------------------------------------------------ lazy model
    def __getstate__(self):
        return {"agent": self.agent, "urdf": self.urdf}   # the rest is rebuilt on use (Pinocchio)

    def __setstate__(self, state):
        self.__init__(state["agent"], state["urdf"])

    @property
    def task(self):
        if self._task is None:
            from gps_ros.task import TaskModel

            self._task = TaskModel(self.agent, urdf=self.urdf)
        return self._task

    def _build(self) -> None:
        task = self.task
        desc = task.description
        a = self.agent
        self.command = task.command
        self.n = task.n
        self.dX, self.dU = task.dX, task.dU
        self.layout = task.layout
        self.n_substeps = task.n_substeps
        self.h = 1.0 / a.physics_rate_hz
        self.dt = task.dt
        self.damping = np.asarray(task.joint_damping, dtype=np.float64) * np.ones(self.n)
        info = desc.joint_info
        self.u_max = a.torque_limit_scale * np.array([info[j].effort for j in desc.joints])
        self.v_max = a.velocity_limit_scale * np.array([info[j].velocity for j in desc.joints])
        self.lower, self.upper = desc.joint_lower(), desc.joint_upper()
        from gps_ros.robot.model import RobotModel

        self.kin = RobotModel(desc)          # own scratch data: the task's may be used elsewhere
        self.local = task.ee_points_local
        if self.command == "effort":
            dyn = RobotModel(desc)
            if a.gravity_compensation:                  # the firmware's (the simulator's) g(q)
                dyn.model.gravity.linear = np.zeros(3)
            self._dyn = dyn
            # Pinocchio's ABA derivatives do not take continuous joints (cos, sin configuration):
            # their Jacobian by central differences of the step instead
            self._fd_joints = bool(dyn._ci.size)
        else:
            self._dyn = False
            self._fd_joints = False

    def _ready(self) -> None:
        if self._dyn is None:
            self._build()

    # ------------------------------------------------------------------ joints
    def _joint_step(self, q, v, u, jac: bool):
        """Joints after one period from (q, v) (B, n) under u (B, n): q', v' (B, n) and, with
        ``jac``, their Jacobians Dq', Dv' (B, n, 3n) with respect to [q, v, u]."""
        n, B = self.n, q.shape[0]
        I = np.eye(n)
        if jac and self._fd_joints:
            qn, vn, _, _ = self._joint_step(q, v, u, False)
            z = np.concatenate([q, v, u], axis=1)
            D = np.empty((B, 2 * n, 3 * n))
            for k in range(3 * n):
                e = _FD_STEP * np.maximum(1.0, np.abs(z[:, k]))
                zp, zm = z.copy(), z.copy()
                zp[:, k] += e
                zm[:, k] -= e
                yp = np.concatenate(self._joint_step(zp[:, :n], zp[:, n:2 * n], zp[:, 2 * n:], False)[:2], 1)
                ym = np.concatenate(self._joint_step(zm[:, :n], zm[:, n:2 * n], zm[:, 2 * n:], False)[:2], 1)
                D[:, :, k] = (yp - ym) / (2 * e[:, None])
            return qn, vn, D[:, :n], D[:, n:]
        if self.command == "effort":
            uc = np.clip(u, -self.u_max, self.u_max)
            mask = (np.abs(u) < self.u_max).astype(np.float64)       # d clip(u) / du
            q, v = q.copy(), v.copy()
            if jac:
                Dq = np.zeros((B, n, 3 * n))
                Dv = np.zeros((B, n, 3 * n))
                Dq[:, :, :n] = I
                Dv[:, :, n:2 * n] = I
            dyn, d, h = self._dyn, self.damping, self.h
            a = np.empty((B, n))
            if jac:
                Aq, Av, Au = (np.empty((B, n, n)) for _ in range(3))
            for _ in range(self.n_substeps):
                tau = uc - d * v
                for b in range(B):
                    if jac:
                        a[b], Aq[b], Av[b], Minv = dyn.forward_dynamics_derivatives(q[b], v[b], tau[b])
                        Av[b] -= Minv * d                 # τ = clip(u) − d v
                        Au[b] = Minv * mask[b]
                    else:
                        a[b] = dyn.forward_dynamics(q[b], v[b], tau[b])
                if jac:
                    A = Aq @ Dq + Av @ Dv
                    A[:, :, 2 * n:] += Au
                    Dv += h * A
                    Dq += h * Dv
                v += h * a
                q += h * v
            return (q, v, Dq, Dv) if jac else (q, v, None, None)
        dt = self.dt
        if self.command == "velocity":
            vn = np.clip(u, -self.v_max, self.v_max)
            dvn = (np.abs(u) < self.v_max).astype(np.float64)
            qn = q + dt * vn
            if not jac:
                return qn, vn, None, None
            Dv = np.zeros((B, n, 3 * n))
            Dv[:, :, 2 * n:] = dvn[:, :, None] * I
            Dq = dt * Dv
            Dq[:, :, :n] += I
            return qn, vn, Dq, Dv
        # position: to clip(u) at constant speed, capped at the velocity limit
        uc = np.clip(u, self.lower, self.upper)
        du = ((u > self.lower) & (u < self.upper)).astype(np.float64)
        w = (uc - q) / dt
        vn = np.clip(w, -self.v_max, self.v_max)
        free = (np.abs(w) < self.v_max).astype(np.float64)
        qn = q + dt * vn
        if not jac:
            return qn, vn, None, None
        Dv = np.zeros((B, n, 3 * n))
        Dv[:, :, :n] = -(free / dt)[:, :, None] * I
        Dv[:, :, 2 * n:] = (free * du / dt)[:, :, None] * I
        Dq = dt * Dv
        Dq[:, :, :n] += I
        return qn, vn, Dq, Dv

    # ------------------------------------------------------------------ the step
    def __call__(self, X, U) -> np.ndarray:
        """f(x, u) (B, dX) for states X (B, dX) and commands U (B, dU)."""
        return self._step(X, U, jac=False)[0]

    def linearize(self, X, U):
        """(f (B, dX), J (B, dX, dX+dU)): the step and its Jacobian with respect to [x; u]."""
        return self._step(X, U, jac=True)

    def _step(self, X, U, jac: bool):
        self._ready()
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        lay, n, dX, dU = self.layout, self.n, self.dX, self.dU
        if X.shape[1:] != (dX,) or U.shape != (X.shape[0], dU):
            raise ValueError(f"the model step needs X (B, {dX}) and U (B, {dU}); got {X.shape}, "
                             f"{U.shape}")
        B = X.shape[0]
        q, v = X[:, lay.joint_pos], X[:, lay.joint_vel]
        qn, vn, Dq, Dv = self._joint_step(q, v, U, jac)
        P = lay.n_points
        kin, local = self.kin, self.local
        F = np.empty((B, dX))
        F[:, lay.joint_pos], F[:, lay.joint_vel] = qn, vn
        pe, pv = lay.ee_points, lay.ee_vel
        if jac:
            J = np.zeros((B, dX, dX + dU))
            cols = np.r_[lay.joint_pos.start:lay.joint_pos.stop,
                         lay.joint_vel.start:lay.joint_vel.stop, dX:dX + dU]
            Jq = np.zeros((B, dX, 3 * n))
        for b in range(B):
            p0 = kin.points(q[b], local)
            if not jac:
                p1, w1 = kin.point_state(qn[b], vn[b], local)
                F[b, pe] = X[b, pe] + (p1 - p0).ravel()
                F[b, pv] = w1.ravel()
                continue
            G0 = kin.point_jacobian(q[b], local)                 # d FK / dq at q
            p1, w1 = kin.point_state(qn[b], vn[b], local)
            G1 = kin.point_jacobian(qn[b], local)                # at q'
            F[b, pe] = X[b, pe] + (p1 - p0).ravel()
            F[b, pv] = w1.ravel()
            # d(J(q) w)/dq at q', w = v' (central differences of the exact point Jacobian)
            H = np.empty((3 * P, n))
            for k in range(n):
                e = _FD_STEP * max(1.0, abs(qn[b, k]))
                qp, qm = qn[b].copy(), qn[b].copy()
                qp[k] += e
                qm[k] -= e
                H[:, k] = (kin.point_jacobian(qp, local) @ vn[b]
                           - kin.point_jacobian(qm, local) @ vn[b]) / (2 * e)
            Jq[b, pe] = G1 @ Dq[b]
            Jq[b, pe, :n] -= G0
            Jq[b, pv] = G1 @ Dv[b] + H @ Dq[b]
        if jac:
            Jq[:, lay.joint_pos], Jq[:, lay.joint_vel] = Dq, Dv
            J[:, :, cols] = Jq
            idx = np.arange(pe.start, pe.stop)
            J[:, idx, idx] += 1.0                                # p'_rel = p_rel + ...
            return F, J
        return F, None


def model_fitter(cfg, step: "ModelStep", seed: int = 0) -> DynamicsFitter:
    """The :class:`~gps_ros.dynamics.prior.DynamicsFitter` of a ``DynamicsConfig`` with ``type:
    model_prior`` on the model ``step``."""
    return DynamicsFitter(regularization=cfg.regularization,
                          prior=ModelPrior.from_config(cfg, step, seed))


def niw_through_model(mu0_r, Phi_r, fbar, J, zbar):
    """Map NIW parameters over ``[z; r]`` to ``[z; x']`` with ``x' = r + f(z̄) + J (z − z̄)``.

    Args:
        mu0_r (B, D), Phi_r (B, D, D): the prior over residual tuples, D = dZ + dX.
        fbar (B, dX), J (B, dX, dZ), zbar (B, dZ): the model and its Jacobian at z̄.
    Returns:
        mu0 (B, D) = T mu0_r + [0; f(z̄) − J z̄], Phi (B, D, D) = T Phi_r Tᵀ, T = [[I, 0], [J, I]].
    """
    dZ = J.shape[2]
    mu0 = np.array(mu0_r, dtype=np.float64, copy=True)
    mu0[:, dZ:] += np.einsum("bxz,bz->bx", J, mu0_r[:, :dZ] - zbar) + fbar
    Phi = np.array(Phi_r, dtype=np.float64, copy=True)
    # rows: [Szz, Szr; J Szz + Srz, J Szr + Srr], then columns likewise
    Phi[:, dZ:, :] += J @ Phi_r[:, :dZ, :]
    Phi[:, :, dZ:] += Phi[:, :, :dZ] @ np.swapaxes(J, -1, -2)
    return mu0, 0.5 * (Phi + np.swapaxes(Phi, -1, -2))


class _Residuals:
    """Mixin for a learned prior on residual tuples: the residuals ``r_t = x_{t+1} − f(x_t, u_t)``
    of each buffered trial are computed once, when it is added (``residual_fn``: the model step)."""

    residual_fn = None

    def _init_residuals(self, residual_fn) -> None:
        self.residual_fn = residual_fn
        self._R: list = []

    def add_trials(self, X, U) -> None:
        from .buffer import check_trials

        X, U = check_trials(X, U)
        super().add_trials(X, U)                               # checks and appends X, U
        N, T, dX = X.shape
        f = self.residual_fn(X[:, :-1].reshape(-1, dX), U[:, :-1].reshape(-1, U.shape[2]))
        R = X[:, 1:] - f.reshape(N, T - 1, dX)
        self._R.extend(np.array(r) for r in R)
        del self._R[:-self.max_samples]


class ResidualPriorGMM(_Residuals, DynamicsPriorGMM):
    """:class:`~gps_ros.dynamics.prior.DynamicsPriorGMM` over residual tuples ``[x_t, u_t, r_t]``
    (as :class:`~gps_ros.dynamics.prior.PolicyPriorGMM` over state-action pairs); ``eval`` /
    ``eval_batch`` take residual tuples."""

    def __init__(self, residual_fn, **kwargs):
        super().__init__(**kwargs)
        self._init_residuals(residual_fn)

    def transition_data(self) -> np.ndarray:
        """All buffered residual tuples ``[x_t, u_t, r_t]`` as (sum_i (T_i − 1), 2dX+dU)."""
        if not self._X:
            raise RuntimeError("the prior's buffer is empty")
        return np.concatenate([np.concatenate([x[:-1], u[:-1], r], axis=1)
                               for x, u, r in zip(self._X, self._U, self._R)], axis=0)


class ResidualPriorNN(_Residuals, DynamicsPriorNN):
    """:class:`~gps_ros.dynamics.nn_prior.DynamicsPriorNN` whose network learns the residual
    ``r(x, u)`` (its "next state" is ``x + r``) and whose linearisation is that of ``r``: ``eval`` /
    ``eval_batch`` take residual tuples and give the NIW prior over ``[z; r]``."""

    def __init__(self, residual_fn, **kwargs):
        super().__init__(**kwargs)
        self._init_residuals(residual_fn)

    def _pairs(self):
        Z = np.concatenate([np.concatenate([x[:-1], u[:-1]], axis=1)
                            for x, u in zip(self._X, self._U)])
        Y = np.concatenate([x[:-1] + r for x, r in zip(self._X, self._R)])
        return Z, Y

    def linearize(self, Zbar: np.ndarray):
        """r̂(z̄) (B, dX) and ∂r̂/∂z (B, dX, dX+dU)."""
        fz, J = super().linearize(Zbar)
        dX = self.dX
        fz = fz - np.asarray(Zbar, dtype=np.float64)[:, :dX]
        J = J.copy()
        J[:, :, :dX] -= np.eye(dX)
        return fz, J


class ModelPrior:
    """The model step as the NIW prior of the per-step fit, with a learned residual prior (see the
    module docstring); the interface of the other priors (``add_trials``, ``refit``, ``update``,
    ``eval``, ``eval_batch``).

    The (x, u) covariance of the residual prior gets a floor, ``zz_floor`` times each dimension's
    variance over the buffered trials plus ``zz_min``, before the mapping: where the trials never
    varied a dimension the learned prior has no spread, and the fit's regularisation would zero the
    slopes there; with the floor the model's ``J`` fills them.  It does not change the model part
    of the prior's slopes (``J Σzz (Σzz)⁻¹ = J`` whatever ``Σzz``), only shrinks the learned
    residual's correction in the directions the floor dominates.

    Args:
        step: the :class:`ModelStep` (or any object with ``step(X, U)`` -> (B, dX) and
            ``step.linearize(X, U)`` -> (f, J)).

        learned: ``"gmm"`` or ``"nn"``: the kind of the residual prior.
        learned_kwargs: keyword arguments of :class:`ResidualPriorGMM` / :class:`ResidualPriorNN`.

        zz_floor, zz_min: the floor of the (x, u) covariance (relative, absolute; ``zz_min`` is
            100 times the fit's default regularisation, which then keeps 98 % of the model's
            slope in a direction no trial explored).
    """

    def __init__(self, step: ModelStep, learned: str = "gmm", learned_kwargs: Optional[dict] = None,
                 zz_floor: float = 1e-2, zz_min: float = 1e-4):
        if learned not in ("gmm", "nn"):
            raise ValueError(f"the learned part of the model prior must be gmm or nn, not {learned!r}")
        if zz_floor < 0 or zz_min < 0:
            raise ValueError("zz_floor and zz_min must be >= 0")
        self.step = step
        self.learned_kind = learned
        cls = ResidualPriorGMM if learned == "gmm" else ResidualPriorNN
        self.learned = cls(step, **(learned_kwargs or {}))
        self.zz_floor = float(zz_floor)
        self.zz_min = float(zz_min)
        self.zz_var: Optional[np.ndarray] = None

    @classmethod
    def from_config(cls, cfg, step: ModelStep, seed: int = 0) -> "ModelPrior":
        """From a ``DynamicsConfig``: the residual prior ``model_residual`` with the settings of
        ``prior`` (gmm) or ``nn`` (nn)."""
        if cfg.model_residual == "nn":
            return cls(step, "nn", nn_prior_kwargs(cfg, seed))
        return cls(step, "gmm", gmm_prior_kwargs(cfg, seed))

    # ------------------------------------------------------------------ buffer (delegated)
    @property
    def fitted(self) -> bool:
        return self.learned.fitted

    @property
    def n_trials(self) -> int:
        return self.learned.n_trials

    @property
    def dX(self):
        return self.learned.dX

    @property
    def dU(self):
        return self.learned.dU

    @property
    def strength(self) -> float:
        return self.learned.strength

    def add_trials(self, X, U) -> None:
        self.learned.add_trials(X, U)

    def refit(self) -> None:
        self.learned.refit()
        Z = np.concatenate([np.concatenate([x[:-1], u[:-1]], axis=1)
                            for x, u in zip(self.learned._X, self.learned._U)])
        self.zz_var = Z.var(axis=0)

    def update(self, X, U) -> None:
        self.add_trials(X, U)
        self.refit()

    def initial_state(self):
        return self.learned.initial_state()

    # ------------------------------------------------------------------ NIW prior
    def eval_batch(self, dX: int, dU: int, P: np.ndarray):
        """NIW prior for B time steps' tuples P (B, N, 2dX+dU) ``[x_t, u_t, x_{t+1}]`` -> mu0 (B, D),
        Phi (B, D, D), m (B,), n0 (B,)."""
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 3 or P.shape[-1] != 2 * dX + dU:
            raise ValueError(f"tuples of shape {P.shape} for dX={dX}, dU={dU}")
        B, N, _ = P.shape
        dZ = dX + dU
        Z = P[..., :dZ]
        zbar = Z.mean(axis=1)
        fbar, J = self.step.linearize(zbar[:, :dX], zbar[:, dX:])
        if N == 1:
            f = fbar[:, None]
        else:
            f = self.step(Z[..., :dX].reshape(-1, dX), Z[..., dX:].reshape(-1, dU)).reshape(B, N, dX)
        Pr = np.concatenate([Z, P[..., dZ:] - f], axis=2)
        mu0_r, Phi_r, m, n0 = self.learned.eval_batch(dX, dU, Pr)
        Phi_r = np.array(Phi_r, dtype=np.float64, copy=True)
        if self.zz_var is not None and (self.zz_floor > 0 or self.zz_min > 0):
            floor = self.zz_floor * self.zz_var + self.zz_min          # Phi = n0 x covariance
            i = np.arange(dZ)
            Phi_r[:, i, i] += np.asarray(n0, dtype=np.float64).reshape(-1, 1) * floor
        mu0, Phi = niw_through_model(np.asarray(mu0_r), Phi_r, fbar, J, zbar)
        return mu0, Phi, m, n0

    def eval(self, dX: int, dU: int, pts: np.ndarray):
        """NIW prior for one time step's tuples pts (N, 2dX+dU) -> mu0, Phi, m, n0."""
        mu0, Phi, m, n0 = self.eval_batch(dX, dU, np.atleast_2d(pts)[None])
        return mu0[0], Phi[0], float(np.asarray(m).ravel()[0]), float(np.asarray(n0).ravel()[0])


# ---------------------------------------------------------------------- deliberately wrong models
def scaled_inertia_urdf(urdf: str, scale: float) -> str:
    """The URDF text with every link's mass and inertia tensor multiplied by ``scale`` (a model
    that is wrong by ``scale − 1`` on every link; for benchmarks and tests)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(urdf)
    for inertial in root.iter("inertial"):
        mass = inertial.find("mass")
        if mass is not None and mass.get("value") is not None:
            mass.set("value", repr(float(mass.get("value")) * scale))
        inertia = inertial.find("inertia")
        if inertia is not None:
            for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz"):
                if inertia.get(k) is not None:
                    inertia.set(k, repr(float(inertia.get(k)) * scale))
    return ET.tostring(root, encoding="unicode")


def payload_urdf(urdf: str, link: str, mass: float, radius: float = 0.03) -> str:
    """The URDF text with a payload (a solid sphere of ``mass`` kg and ``radius`` m) fixed at the
    origin of ``link`` (e.g. the EE link: a tool the real arm does not carry, or the other way
    round; for benchmarks and tests)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(urdf)
    i = 0.4 * mass * radius ** 2
    body = ET.SubElement(root, "link", name="model_payload")
    inertial = ET.SubElement(body, "inertial")
    ET.SubElement(inertial, "origin", xyz="0 0 0", rpy="0 0 0")
    ET.SubElement(inertial, "mass", value=repr(float(mass)))
    ET.SubElement(inertial, "inertia", ixx=repr(i), ixy="0", ixz="0", iyy=repr(i), iyz="0",
                  izz=repr(i))
    joint = ET.SubElement(root, "joint", name="model_payload_joint", type="fixed")
    ET.SubElement(joint, "parent", link=link)
    ET.SubElement(joint, "child", link="model_payload")
    ET.SubElement(joint, "origin", xyz="0 0 0", rpy="0 0 0")
    return ET.tostring(root, encoding="unicode")
