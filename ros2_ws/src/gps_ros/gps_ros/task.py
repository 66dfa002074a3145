"""Build the task pieces the GPS loop needs from a config and a simulator: cost and initial controllers."""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np

from .config import ExperimentConfig
from .control import LinearGaussianController
from .control.init import pd_hold_controller
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


def build_initial_controllers(cfg: ExperimentConfig, sim) -> List[LinearGaussianController]:
    """One PD-hold controller per condition around its start pose.

    Gains and noise are given in joint-acceleration units and mapped to torques through the
    joint-space inertia M at the start pose (Kp = stiffness·M, Kd = damping·M, Σ = init_var·M Mᵀ),
    so that the coupled joints of the arm (e.g. Panda joints 1 and 3) respond as decoupled
    second-order systems; with a diagonal scaling the zero-order-hold PD loop at 20 Hz goes
    unstable on the coupled mode."""
    ic = cfg.init_controller
    layout = sim.layout
    out = []
    for c in cfg.agent.conditions:
        q0 = np.asarray(c.start_joint_positions or cfg.agent.start_joint_positions, float)
        M = sim.mass_matrix(q0)
        pos = np.arange(layout.joint_pos.start, layout.joint_pos.stop)
        vel = np.arange(layout.joint_vel.start, layout.joint_vel.stop)
        out.append(pd_hold_controller(cfg.agent.T, layout.dX, q0, pos, vel, ic.stiffness * M,
                                      ic.damping * M, ic.init_var * M @ M.T))
    return out


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
