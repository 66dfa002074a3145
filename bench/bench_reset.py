"""Automatic reset moves on the simulated Panda standing in for a torque-controlled robot (gravity
compensated, 20 Hz commands): from random poses around each condition's start pose, the
minimum-jerk move + PD (gps_ros.reset, the sampler's reset_mode move with robot_standin.yaml's
settings) -- time per reset and the joint error when it ends; then, per condition, how far the
same noisy trial (the initial PD-hold controller, one noise draw, T steps) ends from where it
ends after an exact reset (the simulator teleported to the start pose), over 5 resets each.

    python bench/bench_reset.py [--config .../panda_vision.yaml] [--resets 40] [--spread 0.5]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gps_ros.agents.sim import build_sim
from gps_ros.config import load_config
from gps_ros.task import robot_description
from gps_ros.reset import JointMove, ResetSettings, start_pose
from gps_ros.safety import JointStateSample, SafetyFilter
from gps_ros.sim.arm import ArmSim

PKG = Path(__file__).resolve().parents[1] / "ros2_ws/src/gps_ros"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(PKG / "config/panda_vision.yaml"))
    ap.add_argument("--resets", type=int, default=40)
    ap.add_argument("--spread", type=float, default=0.5, help="rad, uniform offset per joint")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = load_config(a.config)
    sim, _ = build_sim(cfg.agent)
    model = ArmSim(cfg.agent)
    limits = robot_description(cfg.agent).limits()
    settings = ResetSettings(max_velocity=limits.velocity * 0.2,
                             viscous_friction=cfg.agent.joint_damping)
    rng = np.random.default_rng(a.seed)
    lay, n_cond = sim.layout, len(cfg.agent.conditions)
    rows = []
    t_wall = time.perf_counter()
    for k in range(a.resets):
        cond = k % n_cond
        goal = start_pose(cfg.agent, cond)
        sim.reset(cond)
        sim.pose_scene(np.clip(goal + rng.uniform(-a.spread, a.spread, 7), limits.lower + 0.1,
                               limits.upper - 0.1), sim.target)
        x, st, move = reset_to(sim, model, settings, goal, limits)
        q = x[lay.joint_pos]
        rows.append((st.done, st.elapsed, move.duration, np.abs(q - goal).max(),
                     np.abs(x[lay.joint_vel]).max(), np.abs(move.start - goal).max()))
    repro = [reproducibility(cfg, sim, model, settings, cond, rng) for cond in range(n_cond)]
    sim.close()
    model.close()
    r = np.array(rows, dtype=float)
    ok = r[:, 0] > 0
    print(f"{a.resets} resets over {n_cond} conditions ({Path(a.config).name}), start poses "
          f"+-{a.spread} rad per joint, {time.perf_counter() - t_wall:.1f} s wall")
    print(f"reached within tolerance (10 mrad, 0.02 rad/s): {ok.sum()}/{len(r)}")
    print(f"largest joint distance to go: median {np.median(r[:, 5]):.2f} rad, max {r[:, 5].max():.2f}")
    print(f"time per reset (robot time): median {np.median(r[:, 1]):.2f} s, max {r[:, 1].max():.2f} s "
          f"(planned profile: median {np.median(r[:, 2]):.2f} s)")
    print(f"max joint error at the end: median {np.median(r[:, 3]) * 1e3:.1f} mrad, max "
          f"{r[:, 3].max() * 1e3:.1f} mrad; max joint speed {r[:, 4].max():.3f} rad/s")
    print(f"trials after a reset vs after an exact reset, final EE point: max "
          f"{max(repro) * 1e3:.2f} mm over {n_cond} conditions x 5 resets "
          f"(per condition {', '.join(f'{v * 1e3:.2f}' for v in repro)} mm)")


def reset_to(sim, model, settings, goal, limits):
    lay = sim.layout
    x = sim.state()
    move = JointMove(goal, SafetyFilter(limits, control_period=sim.dt, stale_periods=3),
                     settings, mass_matrix=model.mass_matrix)
    t = 0.0
    while True:
        u, st = move.step(JointStateSample(x[lay.joint_pos], x[lay.joint_vel], t), t)
        if st.done or st.failed:
            return x, st, move
        x = sim.step(u)
        t += sim.dt


def reproducibility(cfg, sim, model, settings, cond, rng, resets=5):
    from gps_ros.control.init import pd_hold_controller

    lay, T = sim.layout, cfg.agent.T
    goal = start_pose(cfg.agent, cond)
    M = model.mass_matrix(goal)
    idx = lay.joint_state_indices
    ctrl = pd_hold_controller(T, sim.dX, goal, idx[:7], idx[7:], M * 10.0, M * 6.0, M @ M * 2.0)
    noise = np.random.default_rng(cond).standard_normal((T, 7))
    limits = robot_description(cfg.agent).limits()

    def trial(x):
        for t in range(T):
            x = sim.step(ctrl.act(t, x, noise[t]))
        return x[lay.ee_indices][:3].copy()

    exact = trial(sim.reset(cond))
    worst = 0.0
    for _ in range(resets):
        sim.reset(cond)
        sim.pose_scene(goal + rng.uniform(-0.5, 0.5, 7), sim.target)
        x, st, _ = reset_to(sim, model, settings, goal, limits)
        if not st.done:
            raise RuntimeError(f"reset failed: {st.reason}")
        worst = max(worst, float(np.linalg.norm(trial(x) - exact)))
    return worst


if __name__ == "__main__":
    main()
