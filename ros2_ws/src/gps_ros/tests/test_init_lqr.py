"""init_controller.type lqr: the guessed linear model of the arm and the first step taken on it."""
from pathlib import Path

import numpy as np
import pytest

from gps_ros.agents import SimAgent
from gps_ros.config import load_config
from gps_ros.task import build_initial_controllers, linear_model

REACH = Path(__file__).resolve().parents[1] / "config" / "panda_reach.yaml"


@pytest.fixture(scope="module")
def reach():
    """The shipped reach task with the PD-hold start."""
    cfg = load_config(REACH, ["init_controller.type=pd_hold"])
    agent = SimAgent(cfg.agent)
    yield cfg, agent
    agent.close()


def test_ee_point_jacobian_predicts_small_joint_moves(reach):
    cfg, agent = reach
    sim, pts = agent.sim, agent.sim.layout.ee_points
    rng = np.random.default_rng(0)
    q0 = sim.reset(0)[sim.layout.joint_pos]
    J = sim.ee_point_jacobian(q0)
    assert J.shape == (9, 7)
    for _ in range(3):
        dq = 1e-3 * rng.standard_normal(7)
        p0 = sim.reset(0)[pts]
        sim._set_joints(q0 + dq)
        moved = sim.state()[pts] - p0
        np.testing.assert_allclose(moved, J @ dq, atol=0.02 * np.abs(moved).max())
    sim.reset(0)


def test_linear_model_predicts_the_arm_near_its_start(reach):
    """One-step predictions along a PD-hold trial with exploration noise (what the first trials
    look like): the EE points' prediction error is a small fraction of how far they move."""
    cfg, agent = reach
    L = agent.sim.layout
    hold = build_initial_controllers(cfg, agent.task)
    rng = np.random.default_rng(1)
    for m in (0, 3):
        tr = agent.sample(hold[m], m, rng.standard_normal((1, cfg.agent.T, 7)))
        x0, Fm = linear_model(cfg, agent.task, m)
        X, U = tr.X[0], tr.U[0]
        np.testing.assert_allclose(x0, X[0])
        pred = np.concatenate([X[:-1], U[:-1]], 1) @ Fm.T
        err = np.abs(pred - X[1:])[:, L.ee_indices].mean()
        step = np.abs(X[1:] - X[:-1])[:, L.ee_indices].mean()
        assert err < 0.15 * step, (err, step)


def test_lqr_init_heads_for_the_targets(reach):
    """The first trials of the reach task: the PD hold stays ~25 cm from the targets, the step on
    the model ends within 10 cm of every target, with gentle torques, still exploring: like any
    KL step from the hold, the max-entropy covariance (Q_uu/η + Σ_hold⁻¹)⁻¹ is below the hold's."""
    cfg, agent = reach
    hold = build_initial_controllers(cfg, agent.task)
    cfg_lqr = load_config(REACH, ["init_controller.type=lqr"])
    planned = build_initial_controllers(cfg_lqr, agent.task)
    for m in range(4):
        d_hold = agent.sim.ee_distance(agent.sample(hold[m], m).X[0, -1])
        tr = agent.sample(planned[m], m)
        d = agent.sim.ee_distance(tr.X[0, -1])
        assert d_hold > 0.15 and d < 0.10, (m, d_hold, d)
        assert np.abs(tr.U).max() < 10.0                       # N m; the limits are 12-87
        ratio = (np.trace(planned[m].pol_covar, axis1=1, axis2=2)
                 / np.trace(hold[m].pol_covar, axis1=1, axis2=2))
        assert np.all((ratio > 0.2) & (ratio < 1.0)), ratio
