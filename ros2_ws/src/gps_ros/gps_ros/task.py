"""Build the task pieces the GPS loop needs from a config and a simulator: cost and initial controllers."""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np

from .config import ExperimentConfig
from .control import LinearGaussianController
from .control.init import lqr_init_controller, pd_hold_controller
from .cost import ActionCost, EEPointsCost, WeightedSumCost


def point_weights(wp, k: int) -> np.ndarray:
    """A cost.ee term's per-coordinate weights over ``k`` EE point coordinates: ``wp`` of 3
    values (x, y, z) is repeated for every point, 3 per point is taken as is, None is all 1."""
    if wp is None:
        return np.ones(k)
    w = np.asarray(wp, dtype=np.float64)
    if w.size == 3:
        w = np.tile(w, k // 3)
    if w.size != k:
        raise ValueError(f"cost.ee wp needs 3 or {k} values, got {len(wp)}")
    return w


def loop_kwargs(cfg: ExperimentConfig, sim) -> dict:
    """What the GPS loop needs of the task besides its stages, the same in-process and over ROS:
    the final-distance report, the task metrics (peg insertion) and the exploration noise shape."""
    ic = cfg.init_controller
    return dict(distance_fn=lambda X: sim.ee_distance(X[:, -1]), task_metrics=task_metrics(sim),
                noise_kwargs=dict(smooth=ic.smooth_noise, sigma=ic.smooth_sigma))


def build_cost(cfg: ExperimentConfig, sim) -> WeightedSumCost:
    """Action cost plus the distance-penalty terms on the EE points (see :mod:`gps_ros.cost`)."""
    a = cfg.cost.action
    joint_inertia = np.diag(sim.mass_matrix(cfg.agent.start_joint_positions))
    dU = len(joint_inertia)
    if a.per_joint is not None:
        if len(a.per_joint) != dU:
            raise ValueError(f"cost.action.per_joint needs {dU} values, got {len(a.per_joint)}")
        w = np.asarray(a.per_joint, float)
    else:
        w = 1.0 / np.asarray(joint_inertia, float) ** 2
    costs, weights = [ActionCost(w)], [a.weight]
    for term in cfg.cost.ee:
        idx = sim.layout.ee_indices if term.on == "points" else sim.layout.ee_vel_indices
        costs.append(EEPointsCost(idx, wp=point_weights(term.wp, len(idx)), l1=term.l1, l2=term.l2, alpha=term.alpha,
                                  ramp=term.ramp, final_multiplier=term.final_multiplier))
        weights.append(term.weight)
    return WeightedSumCost(costs, weights)


def build_initial_controllers(cfg: ExperimentConfig, sim,
                              cost: Optional[WeightedSumCost] = None) -> List[LinearGaussianController]:
    """One initial controller per condition (``init_controller.type``).

    ``pd_hold``: a PD hold around the start pose.  Gains and noise are given in joint-acceleration
    units and mapped to torques through the joint-space inertia M at the start pose (Kp =
    stiffness·M, Kd = damping·M, Σ = init_var·M Mᵀ), so that the coupled joints of the arm (e.g.
    Panda joints 1 and 3) respond as decoupled second-order systems; with a diagonal scaling the
    zero-order-hold PD loop at 20 Hz goes unstable on the coupled mode.

    ``lqr``: a first C-step from that PD hold taken on :func:`linear_model` (the arm's inertia
    and end-effector Jacobian at the start pose, from its description) instead of on fitted
    dynamics, KL-bounded like LQR-FLM's (:func:`gps_ros.control.init.lqr_init_controller`): the
    first trials already head for the target instead of exploring around the start; it plans on
    ``cost`` (default: :func:`build_cost`)."""
    ic = cfg.init_controller
    layout = sim.layout
    if ic.type == "lqr" and cost is None:
        cost = build_cost(cfg, sim)
    out = []
    for m, c in enumerate(cfg.agent.conditions):
        q0 = np.asarray(c.start_joint_positions or cfg.agent.start_joint_positions, float)
        M = sim.mass_matrix(q0)
        pos = np.arange(layout.joint_pos.start, layout.joint_pos.stop)
        vel = np.arange(layout.joint_vel.start, layout.joint_vel.stop)
        hold = pd_hold_controller(cfg.agent.T, layout.dX, q0, pos, vel, ic.stiffness * M,
                                  ic.damping * M, ic.init_var * M @ M.T)
        if ic.type == "lqr":
            x0, Fm = linear_model(cfg, sim, m)
            kl = cfg.algorithm.kl_step if ic.lqr_kl_step is None else ic.lqr_kl_step
            hold = lqr_init_controller(Fm, np.zeros(layout.dX), x0, cost, hold, kl * cfg.agent.T,
                                       iterations=ic.lqr_iterations)
        out.append(hold)
    return out


def linear_model(cfg: ExperimentConfig, sim, condition: int) -> tuple[np.ndarray, np.ndarray]:
    """A guessed linear model of one control period at the condition's start: (x0, Fm (dX, dXU)).

    The gravity-compensated arm M q̈ = u − d q̇ (inertia M at the start pose, the viscous joint
    damping d) discretised exactly for the zero-order hold over the control period; the EE points
    move with their Jacobian J at the start pose (p' = p + J (q' − q), ṗ' = J q̇').  Coriolis
    forces, the change of M and J along the motion, torque limits and contacts are left out: it
    is a guess for the first trials, what the robot's description gives before any data."""
    from scipy.linalg import expm

    layout = sim.layout
    x0 = np.asarray(sim.reset(condition), float)
    q0 = x0[layout.joint_pos]
    n = q0.shape[0]
    M = sim.mass_matrix(q0)
    J = sim.ee_point_jacobian(q0)                  # leaves the arm back at q0, at rest: x0 holds
    Minv = np.linalg.inv(M)
    # continuous time [q, q̇, u]' = [[0, I, 0], [0, −M⁻¹d, M⁻¹], [0, 0, 0]] [q, q̇, u]
    Ac = np.zeros((3 * n, 3 * n))
    Ac[:n, n:2 * n] = np.eye(n)
    Ac[n:2 * n, n:2 * n] = -cfg.agent.joint_damping * Minv
    Ac[n:2 * n, 2 * n:] = Minv
    E = expm(Ac * sim.dt)
    Ajj, Bj = E[:2 * n, :2 * n], E[:2 * n, 2 * n:]           # [q; q̇]' = Ajj [q; q̇] + Bj u
    dX, dU = layout.dX, n
    Fm = np.zeros((dX, dX + dU))
    jp = np.r_[layout.joint_pos.start:layout.joint_pos.stop, layout.joint_vel.start:layout.joint_vel.stop]
    Fm[np.ix_(jp, jp)] = Ajj
    Fm[jp, dX:] = Bj
    dq = np.hstack([Ajj[:n] - np.eye(n, 2 * n), Bj[:n]])     # q' − q = dq [q; q̇; u]
    qd_next = np.hstack([Ajj[n:], Bj[n:]])                   # q̇' = qd_next [q; q̇; u]
    pts, vel = layout.ee_indices, layout.ee_vel_indices
    Fm[pts, pts] = 1.0
    Fm[np.ix_(pts, np.r_[jp, dX:dX + dU])] += J @ dq
    Fm[np.ix_(vel, np.r_[jp, dX:dX + dU])] = J @ qd_next
    return x0, Fm


def task_metrics(sim) -> Optional[Callable]:
    """Per-iteration task metrics beyond the EE distance: for the peg task the insertion depth
    (m, mean over the condition's trials at the last step) and the fraction of trials inserted."""
    if getattr(sim, "peg", None) is None:
        return None

    def peg_metrics(valid) -> dict:
        out = [sim.insertion(tr.X[:, -1]) for tr in valid]
        return {"insertion_depth": [float(np.mean(d)) for d, _ in out],
                "inserted": [float(np.mean(ok)) for _, ok in out]}

    return peg_metrics
