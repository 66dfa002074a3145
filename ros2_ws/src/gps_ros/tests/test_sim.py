"""Tests of the PyBullet Panda simulator, SimAgent and the Gymnasium env (gps_ros.sim, gps_ros.agents)."""
from __future__ import annotations

import importlib
import logging
import warnings

import gymnasium
import numpy as np
import pybullet as p
import pytest

from gps_ros.agents.sim import MAX_JOINT_VELOCITY, SimAgent
from gps_ros.config import AgentConfig, ConditionConfig, ExperimentConfig
from gps_ros.sim import ENV_ID, ArmSim, StateLayout
from gps_ros.sim.gym_env import ReachEnv

START_1 = [0.3, -0.2, 0.1, -2.0, 0.2, 1.9, 0.5]


def make_cfg(**kw) -> AgentConfig:
    base = dict(T=20, conditions=[ConditionConfig(target=(0.5, 0.1, 0.35)),
                                  ConditionConfig(target=(0.4, -0.2, 0.5), start_joint_positions=START_1)])
    base.update(kw)
    return AgentConfig(**base)


def smooth_torques(seed: int, n: int, T: int, scale=(1.5, 1.5, 1.5, 1.5, 0.4, 0.4, 0.4)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    k /= np.sqrt((k ** 2).sum())
    w = rng.standard_normal((n, T + len(k) - 1, 7))
    out = np.empty((n, T, 7))
    for i in range(n):
        for j in range(7):
            out[i, :, j] = np.convolve(w[i, :, j], k, mode="valid")
    return out * np.asarray(scale)


class NoisePolicy:
    """u = noise (open loop)."""

    def act(self, t, x, noise):
        return np.array(noise, dtype=float)


@pytest.fixture(scope="module")
def sim():
    s = ArmSim(make_cfg())
    yield s
    s.close()


def world_point_targets(s: ArmSim, condition: int):
    """Independent computation of the EE point targets: target + R0 p_i at the start pose."""
    c = s.cfg.conditions[condition]
    q0 = c.start_joint_positions or s.cfg.start_joint_positions
    for j, q in enumerate(q0):
        p.resetJointState(s.robot, j, q, 0.0, physicsClientId=s.physics_client)
    ls = p.getLinkState(s.robot, s.ee_index, computeForwardKinematics=1, physicsClientId=s.physics_client)
    R0 = np.array(p.getMatrixFromQuaternion(ls[5])).reshape(3, 3)
    return np.asarray(c.target) + np.asarray(s.cfg.ee_points) @ R0.T


def world_points(s: ArmSim):
    ls = p.getLinkState(s.robot, s.ee_index, computeForwardKinematics=1, physicsClientId=s.physics_client)
    R = np.array(p.getMatrixFromQuaternion(ls[5])).reshape(3, 3)
    return np.asarray(ls[4]) + np.asarray(s.cfg.ee_points) @ R.T


# --- layout, reset, kinematics ----------------------------------------------------------------
def test_layout_sizes(sim):
    lay = sim.layout
    assert sim.dX == lay.dX == 7 + 7 + 9 + 9 == 32 and sim.dU == 7
    assert (lay.joint_pos, lay.joint_vel) == (slice(0, 7), slice(7, 14))
    assert (lay.ee_points, lay.ee_vel) == (slice(14, 23), slice(23, 32))
    np.testing.assert_array_equal(lay.ee_indices, np.arange(14, 23))
    assert StateLayout.for_points(1, 7).dX == 20
    one = ArmSim(make_cfg(ee_points=[(0.0, 0.0, 0.0)]))
    try:
        assert one.reset(0).shape == (20,)
    finally:
        one.close()
    with pytest.raises(ValueError, match="EE origin"):
        ArmSim(make_cfg(ee_points=[(0.1, 0.0, 0.0)]))


def test_reset_start_pose_and_zero_velocity(sim):
    x0 = sim.reset(0)
    np.testing.assert_allclose(x0[:7], make_cfg().start_joint_positions, atol=1e-12)
    x1 = sim.reset(1)
    np.testing.assert_allclose(x1[:7], START_1, atol=1e-12)
    for x in (x0, x1):
        assert x.shape == (sim.dX,)
        np.testing.assert_allclose(x[7:14], 0.0, atol=1e-12)
        np.testing.assert_allclose(x[sim.layout.ee_vel], 0.0, atol=1e-12)
    np.testing.assert_allclose(sim.target, (0.4, -0.2, 0.5))
    # at the start pose, every point is offset from its target by the same vector (EE - target)
    pts = x1[sim.layout.ee_points].reshape(-1, 3)
    np.testing.assert_allclose(pts, np.broadcast_to(pts[0], pts.shape), atol=1e-12)


def test_ee_distance_and_points_match_pybullet(sim):
    for cond in (0, 1):
        sim.reset(cond)
        targets = world_point_targets(sim, cond)
        x = sim.reset(cond)
        for u in smooth_torques(cond, 1, 8)[0]:
            x = sim.step(u)
        ls = p.getLinkState(sim.robot, sim.ee_index, computeForwardKinematics=1,
                            physicsClientId=sim.physics_client)
        d = np.linalg.norm(np.asarray(ls[4]) - np.asarray(sim.cfg.conditions[cond].target))
        assert sim.ee_distance(x) == pytest.approx(d, abs=1e-9)
        np.testing.assert_allclose(x[sim.layout.ee_points].reshape(-1, 3),
                                   world_points(sim) - targets, atol=1e-9)
        # batched
        assert sim.ee_distance(np.stack([x, x])[None]).shape == (1, 2)


# --- dynamics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["world", "substep"])
def test_gravity_compensation_holds_still(mode):
    cfg = make_cfg()
    s = ArmSim(cfg, gravity_update=mode)
    try:
        x0 = s.reset(0)
        for _ in range(int(cfg.control_rate_hz)):  # 1 s
            x = s.step(np.zeros(7))
        assert np.abs(x[:7] - x0[:7]).max() < 1e-4
        assert np.abs(x[7:14]).max() < 1e-3
        assert np.linalg.norm(x[14:17] - x0[14:17]) < 1e-4
        g = s.gravity_torque()
        assert np.abs(g[1]) > 5.0  # shoulder carries real load: compensation is doing work
    finally:
        s.close()


def test_without_gravity_compensation_the_arm_falls():
    s = ArmSim(make_cfg(gravity_compensation=False))
    try:
        x0 = s.reset(0)
        for _ in range(20):
            x = s.step(np.zeros(7))
        assert np.abs(x[:7] - x0[:7]).max() > 0.2
        assert x[16] < x0[16] - 0.05  # EE z dropped by > 5 cm
    finally:
        s.close()


def test_world_mode_equals_inverse_dynamics_every_substep():
    cfg = make_cfg()
    U = smooth_torques(3, 1, 40)[0]
    out = {}
    for mode in ("world", "substep", "control"):
        s = ArmSim(cfg, gravity_update=mode)
        X = [s.reset(0)]
        X += [s.step(u) for u in U]
        out[mode] = np.array(X)
        s.close()
    ee = slice(14, 17)
    assert np.abs(out["world"][:, 7:14]).max() > 1.0  # the arm really moves
    assert np.linalg.norm(out["world"][:, ee] - out["substep"][:, ee], axis=1).max() < 1e-4
    # holding g(q) over a whole control period is a visibly different model
    assert np.linalg.norm(out["control"][:, ee] - out["substep"][:, ee], axis=1).max() > 1e-2


def test_world_mode_refuses_extra_bodies():
    s = ArmSim(make_cfg())
    try:
        s.reset(0)
        box = p.createCollisionShape(p.GEOM_BOX, halfExtents=[0.05] * 3, physicsClientId=s.physics_client)
        p.createMultiBody(1.0, box, basePosition=[1, 1, 1], physicsClientId=s.physics_client)
        with pytest.raises(RuntimeError, match="only body"):
            s.reset(0)
    finally:
        s.close()


def test_torque_clipping():
    cfg = make_cfg(torque_limit_scale=0.5)
    s = ArmSim(cfg)
    try:
        np.testing.assert_allclose(s.torque_limits, 0.5 * np.array([87, 87, 87, 87, 12, 12, 12]))
        assert np.all(s.joint_lower < s.joint_upper)

        def run(u, n=3):
            s.reset(0)
            for _ in range(n):
                x = s.step(u)
            return x

        lim = s.torque_limits
        sign = np.array([1, -1, 1, 1, -1, 1, -1.0])
        at_limit = run(sign * lim)
        np.testing.assert_array_equal(run(sign * lim * 100.0), at_limit)
        assert np.abs(run(sign * lim * 0.5) - at_limit).max() > 1e-3  # below the limit it matters
        with pytest.raises(ValueError):
            s.step(np.full(7, np.nan))
        with pytest.raises(ValueError):
            s.step(np.zeros(6))
    finally:
        s.close()


def test_velocities_match_finite_differences():
    cfg = make_cfg(control_rate_hz=60.0)  # finer sampling for the finite differences
    s = ArmSim(cfg)
    try:
        X = [s.reset(0)]
        X += [s.step(u) for u in smooth_torques(5, 1, 60, scale=(3, 3, 3, 3, 0.3, 0.3, 0.3))[0]]
        X = np.array(X)
        lay = s.layout
        fd = (X[2:] - X[:-2]) / (2 * s.dt)
        qd, qd_fd = X[1:-1, lay.joint_vel], fd[:, lay.joint_pos]
        v, v_fd = X[1:-1, lay.ee_vel], fd[:, lay.ee_points]  # targets are constant
        assert np.abs(v).max() > 0.3  # the EE really moves
        for a, b in ((qd, qd_fd), (v, v_fd)):
            assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.05
        # the points move differently (rotation enters through w x R p_i)
        assert np.abs(v[:, 3:6] - v[:, 0:3]).max() > 1e-2
    finally:
        s.close()


# --- SimAgent ---------------------------------------------------------------------------------
def test_agent_sample_shapes_and_meta():
    agent = SimAgent(make_cfg(T=15))
    try:
        noise = smooth_torques(0, 2, 15)
        tr = agent.sample(NoisePolicy(), 1, noise=noise, seeds=[7, 8], source="policy")
        assert tr.X.shape == (2, 15, 32) and tr.U.shape == (2, 15, 7)
        assert [m.seed for m in tr.meta] == [7, 8] and all(m.condition == 1 for m in tr.meta)
        assert all(m.source == "policy" and not m.discarded for m in tr.meta)
        np.testing.assert_allclose(tr.X[:, 0, :7], np.array([START_1] * 2))
        np.testing.assert_array_equal(tr.U, noise)
        one = agent.sample(NoisePolicy(), 0)  # noiseless: one trial, zero torque -> holds still
        assert one.N == 1 and np.abs(one.X[0, :, 7:14]).max() < 1e-3
        with pytest.raises(ValueError):
            agent.sample(NoisePolicy(), 0, noise=np.zeros((1, 14, 7)))
    finally:
        agent.close()


class FaultyPolicy:
    """Noise-following policy that returns NaN at step ``bad_t`` of the first trial."""

    def __init__(self, bad_t):
        self.bad_t, self.trial = bad_t, -1

    def act(self, t, x, noise):
        if t == 0:
            self.trial += 1
        if self.trial == 0 and t == self.bad_t:
            return np.full(7, np.nan)
        return np.array(noise)


def test_nonfinite_action_discards_trial(caplog):
    cfg = make_cfg(T=12)
    agent = SimAgent(cfg)
    try:
        noise = smooth_torques(1, 2, 12)
        with caplog.at_level(logging.WARNING):
            tr = agent.sample(FaultyPolicy(bad_t=5), 0, noise=noise)
        assert tr.meta[0].discarded and "non-finite action" in tr.meta[0].reason and "t=5" in tr.meta[0].reason
        assert not tr.meta[1].discarded
        assert any("discarded" in r.message for r in caplog.records)
        assert np.isfinite(tr.X).all() and np.isfinite(tr.U).all()
        np.testing.assert_array_equal(tr.X[0, 6:], np.broadcast_to(tr.X[0, 5], (6, 32)))  # held
        assert tr.valid().N == 1
        # the simulator is still usable and unaffected: trial 1 equals a fresh agent's trial
        fresh = SimAgent(cfg)
        try:
            ref = fresh.sample(NoisePolicy(), 0, noise=noise[1:])
        finally:
            fresh.close()
        np.testing.assert_array_equal(tr.X[1], ref.X[0])
        np.testing.assert_array_equal(agent.sample(NoisePolicy(), 0, noise=noise[1:]).X, ref.X)
    finally:
        agent.close()


def test_blown_up_trial_is_discarded():
    agent = SimAgent(make_cfg(T=10))
    try:
        noise = np.zeros((1, 10, 7))
        noise[0, :, 6] = 12.0  # full wrist torque: 12 N m against 0.5 N m s/rad -> ~24 rad/s
        tr = agent.sample(NoisePolicy(), 0, noise=noise)
        assert tr.meta[0].discarded and "joint speed" in tr.meta[0].reason
        assert np.isfinite(tr.X).all()
        assert agent.sample(NoisePolicy(), 0).meta[0].discarded is False
        assert MAX_JOINT_VELOCITY == 10.0
    finally:
        agent.close()


def test_determinism_and_independent_sims():
    cfg = make_cfg(T=25)
    noise = smooth_torques(2, 2, 25)
    a, b = SimAgent(cfg), SimAgent(cfg)
    try:
        t1 = a.sample(NoisePolicy(), 0, noise=noise)
        t2 = a.sample(NoisePolicy(), 0, noise=noise)
        np.testing.assert_array_equal(t1.X, t2.X)
        np.testing.assert_array_equal(t1.X[0], a.sample(NoisePolicy(), 0, noise=noise[:1]).X[0])
        # interleave two sims stepping different torques: each matches its solo run
        sa, sb = a.sim, b.sim
        assert sa.physics_client != sb.physics_client
        other = smooth_torques(9, 1, 25)[0] * 3
        xa, xb = [sa.reset(0)], [sb.reset(1)]
        for t in range(25):
            xa.append(sa.step(noise[0, t]))
            xb.append(sb.step(other[t]))
        np.testing.assert_array_equal(np.array(xa[:-1]), t1.X[0])
        solo_b = b.sample(NoisePolicy(), 1, noise=other[None])
        np.testing.assert_array_equal(np.array(xb[:-1]), solo_b.X[0])
    finally:
        a.close()
        b.close()


# --- Gymnasium --------------------------------------------------------------------------------
def test_gym_env_check_env():
    from gymnasium.utils.env_checker import check_env

    env = ReachEnv(make_cfg(T=10))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # advisory warnings about unbounded/unnormalised boxes
            check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_gym_make_reset_step_reward():
    cfg = make_cfg(T=5)
    env = gymnasium.make(ENV_ID, config=ExperimentConfig(agent=cfg))
    try:
        obs, info = env.reset(seed=0, options={"condition": 1})
        assert obs.shape == (32,) and obs.dtype == np.float32 and info["condition"] == 1
        np.testing.assert_allclose(obs[:7], START_1, atol=1e-6)
        assert info["distance"] > 0
        u = np.zeros(7, dtype=np.float32)
        u[0] = 1.0
        for t in range(5):
            obs, r, term, trunc, info = env.step(u)
            d = info["distance"]
            expected = -(0.5 * 10 * d * d + np.sqrt(1e-5 + d * d)) - 1e-3
            assert r == pytest.approx(expected, rel=1e-9)
            assert not term and trunc == (t == 4)
        assert env.action_space.high[0] == 87 and env.action_space.high[6] == 12
        # seeded random condition choice is reproducible and covers both conditions
        conds = [env.reset(seed=s)[1]["condition"] for s in range(20)]
        assert conds == [env.reset(seed=s)[1]["condition"] for s in range(20)] and set(conds) == {0, 1}
        with pytest.raises(ValueError):
            env.reset(options={"condition": 2})
    finally:
        env.close()


def test_gym_env_from_yaml(tmp_path):
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"agent": {"T": 7, "conditions": [{"target": [0.5, 0.0, 0.3]}]}}))
    env = ReachEnv(str(path))
    try:
        assert env.cfg.T == 7
        env.reset(seed=1)
    finally:
        env.close()


def test_registration_survives_reimport():
    import gps_ros.sim

    importlib.reload(gps_ros.sim)
    assert ENV_ID in gymnasium.registry


# --- Gymnasium, peg insertion (config/panda_peg.yaml) ----------------------------------------
from pathlib import Path  # noqa: E402

PEG_YAML = Path(__file__).resolve().parents[1] / "config" / "panda_peg.yaml"


def test_gym_peg_reward_and_info():
    from gps_ros.config import load_config

    cfg = load_config(PEG_YAML)
    env = gymnasium.make(ENV_ID, config=cfg)
    try:
        u_env = env.unwrapped
        obs, info = env.reset(seed=0, options={"condition": 2})
        assert {"distance", "condition", "insertion_depth", "inserted"} <= set(info)
        assert info["insertion_depth"] == 0.0 and info["inserted"] is False
        u = np.zeros(7, dtype=np.float32)
        u[0] = 1.0
        obs, r, term, trunc, info = env.step(u)
        assert {"insertion_depth", "inserted", "distance", "max_joint_speed"} <= set(info)
        depth, ok = u_env.sim.insertion(obs.astype(np.float64))
        assert info["insertion_depth"] == pytest.approx(float(depth)) and info["inserted"] == bool(ok)
        # the YAML's GPS cost terms on all 3 EE points (per-coordinate weights wp tiled per point)
        e = obs.astype(np.float64)[u_env.sim.layout.ee_indices]
        assert e.shape == (9,)
        expected = -1e-3
        for term in cfg.cost.ee:
            assert term.on == "points"
            wp = np.tile(term.wp, 3) if term.wp is not None else np.ones(9)
            s = float(np.sum((wp * e) ** 2))
            expected -= term.weight * (0.5 * term.l2 * s + term.l1 * np.sqrt(term.alpha + s))
        assert r == pytest.approx(expected, rel=1e-5)
        # an AgentConfig alone: the default cost (one term, l2 10, l1 1, alpha 1e-5, all coordinates)
        env2 = ReachEnv(cfg.agent)
        try:
            s = float(e @ e)
            assert env2.points_penalty(obs) == pytest.approx(0.5 * 10 * s + np.sqrt(1e-5 + s),
                                                             rel=1e-5)
        finally:
            env2.close()
        # not the reach reward on the EE origin alone
        d = info["distance"]
        assert abs(r - (-(0.5 * 10 * d * d + np.sqrt(1e-5 + d * d)) - 1e-3)) > 1e-3
    finally:
        env.close()


def test_gym_peg_full_insertion_beats_the_start():
    """Joint PD through the env to above the hole, then down into it: the last step is inserted
    and its reward is far above the start's (the points cost is ~0 at full insertion)."""
    from gps_ros.config import load_config

    cfg = load_config(PEG_YAML)
    env = ReachEnv(cfg)
    try:
        sim = env.sim
        q0 = np.array(cfg.agent.start_joint_positions)
        env.reset(options={"condition": 0})
        eet = sim.ee_targets[0].copy()
        q_above = sim.ik_gripper_down(eet + [0, 0, 0.06], q0)
        q_down = sim.ik_gripper_down(eet + [0, 0, -0.005], q0)
        obs, info = env.reset(options={"condition": 0})
        M = sim.mass_matrix(q0)
        rewards = []
        for t in range(cfg.agent.T):
            qg = q_above + (q_down - q_above) * min(1.0, max(0.0, (t - 30) / 30))
            x = obs.astype(np.float64)
            obs, r, term, trunc, info = env.step(M @ (60 * (qg - x[:7]) - 12 * x[7:14]))
            rewards.append(r)
        assert trunc and not term
        assert info["inserted"] is True and info["insertion_depth"] >= 0.9 * cfg.agent.peg.hole_depth
        assert rewards[-1] > rewards[0] + 0.5 and rewards[-1] > -0.1
    finally:
        env.close()
