#!/usr/bin/env python3
"""Benchmark of the PyBullet Panda simulator (gps_ros.sim.ArmSim, gps_ros.agents.SimAgent).

Per 20 Hz control step (12 physics substeps at 240 Hz) it compares ``ArmSim.step`` (torque
clipping, gravity compensation, full state extraction) with *raw PyBullet*: the same physics
substeps with only ``setJointMotorControlArray(TORQUE_CONTROL)`` + ``stepSimulation``.

The raw loop replays, in the same world, the exact joint torques that ``step`` sent to PyBullet
(recorded in an untimed pass), so both loops simulate the identical trajectory (checked: the
final states agree) and the difference is purely our Python overhead.  Two scenarios:
``hold`` (u = 0, the arm stays at the start pose) and ``move`` (smooth random torques, joint
speeds up to ~3 rad/s).  Gravity compensation modes (see gps_ros/sim/panda.py):
``world`` (the default: exact compensation by switching the world's gravity off), ``substep``
(inverse dynamics added to the torque command every substep), ``control`` (inverse dynamics once
per control step; cheap but inaccurate, for comparison).

Each timing is the best of several rounds of 100-step trials (resets untimed), alternating the
variants, to suppress noise from other processes.  Also: a full T=100 trial through
``SimAgent.sample`` with a zero policy.  Usage: ``python bench/bench_sim.py [--rounds N]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pybullet as p

from gps_ros.agents.sim import SimAgent
from gps_ros.config import AgentConfig, ConditionConfig
from gps_ros.sim.arm import ArmSim

MODES = ("world", "substep", "control")


class ZeroPolicy:
    def act(self, t, x, noise):
        return np.zeros(7)


def smooth_torques(rng, n, T, sigma=2.0):
    scale = np.array([4.0, 4.0, 4.0, 4.0, 0.75, 0.75, 0.75])
    k = np.exp(-0.5 * (np.arange(-6, 7) / sigma) ** 2)
    k /= np.sqrt((k ** 2).sum())
    w = rng.standard_normal((n, T + len(k) - 1, 7))
    out = np.stack([np.stack([np.convolve(w[i, :, j], k, mode="valid") for j in range(7)], -1)
                    for i in range(n)])
    return out * scale


def record_torques(sim, U):
    """Run ``sim`` over U (T, 7) from reset(0); return the per-substep torque commands and the end state."""
    rec = []
    orig = p.setJointMotorControlArray

    def spy(*args, **kw):
        if args[2] == p.TORQUE_CONTROL:
            rec.append(list(kw["forces"]))
        return orig(*args, **kw)

    p.setJointMotorControlArray = spy
    try:
        sim.reset(0)
        for u in U:
            x = sim.step(u)
    finally:
        p.setJointMotorControlArray = orig
    return rec, x


def time_step(sim, U):
    sim.reset(0)
    step = sim.step
    t0 = time.perf_counter()
    for u in U:
        step(u)
    return (time.perf_counter() - t0) / len(U)


def time_raw(sim, taus, n_steps):
    sim.reset(0)
    cid, r, arm = sim.physics_client, sim.robot, list(range(7))
    torque, set_ctrl, step_sim = p.TORQUE_CONTROL, p.setJointMotorControlArray, p.stepSimulation
    t0 = time.perf_counter()
    for tau in taus:
        set_ctrl(r, arm, torque, forces=tau, physicsClientId=cid)
        step_sim(physicsClientId=cid)
    dt = (time.perf_counter() - t0) / n_steps
    return dt, sim.state()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--trials", type=int, default=4, help="100-step trials per timing")
    ap.add_argument("--T", type=int, default=100)
    args = ap.parse_args()
    T = args.T

    cfg = AgentConfig(T=T, conditions=[ConditionConfig(target=(0.5, 0.1, 0.35))])
    sims = {m: ArmSim(cfg, gravity_update=m) for m in MODES}
    rng = np.random.default_rng(0)
    scen = {"hold": np.zeros((args.trials, T, 7)), "move": smooth_torques(rng, args.trials, T)}

    # untimed recording pass: what each variant sends to PyBullet, and the state it ends in
    recs, match, vmax = {}, {}, {}
    for m, sim in sims.items():
        for s, Us in scen.items():
            recs[m, s] = [record_torques(sim, U) for U in Us]
            vmax[s] = max(np.abs(sim.state()[7:14]).max(), vmax.get(s, 0.0))

    best = {}

    def keep(key, v):
        best[key] = min(best.get(key, np.inf), v)

    for _ in range(args.rounds):
        for m, sim in sims.items():
            for s, Us in scen.items():
                ts = [time_step(sim, U) for U in Us]
                tr, ok = [], True
                for (taus, x_end) in recs[m, s]:
                    dt, x_raw = time_raw(sim, taus, T)
                    tr.append(dt)
                    ok &= bool(np.allclose(x_raw, x_end, rtol=0, atol=1e-9))
                match[m, s] = ok
                keep(("step", m, s), float(np.mean(ts)))
                keep(("raw", m, s), float(np.mean(tr)))

    sim = sims["world"]
    t_state = []
    for _ in range(args.rounds):
        sim.reset(0)
        t0 = time.perf_counter()
        for _ in range(2000):
            sim.state()
        t_state.append((time.perf_counter() - t0) / 2000)

    trial = {}
    zero = np.zeros((args.trials, T, 7))
    for m in ("world", "substep"):
        agent = SimAgent(cfg, gravity_update=m)
        agent.sample(ZeroPolicy(), 0)
        tt = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            tr = agent.sample(ZeroPolicy(), 0, noise=zero)
            tt.append((time.perf_counter() - t0) / args.trials)
            assert not any(mm.discarded for mm in tr.meta)
        trial[m] = min(tt)
        agent.close()

    print(f"ArmSim benchmark: {cfg.control_rate_hz:g} Hz control, {cfg.physics_rate_hz:g} Hz "
          f"physics ({sim.n_substeps} substeps/step), dX={sim.dX}, best of {args.rounds} rounds x "
          f"{args.trials} trials x {T} steps; 'move' reaches |qdot| = {vmax['move']:.1f} rad/s")
    hdr = (f"{'gravity comp':<13}{'scenario':<9}{'raw us/step':>12}{'step us/step':>13}"
           f"{'raw steps/s':>12}{'step steps/s':>13}{'overhead':>10}  same trajectory")
    print(hdr)
    print("-" * len(hdr))
    for m in MODES:
        for s in scen:
            r, st = best["raw", m, s], best["step", m, s]
            print(f"{m:<13}{s:<9}{1e6 * r:12.1f}{1e6 * st:13.1f}{1 / r:12.0f}{1 / st:13.0f}"
                  f"{100 * (st / r - 1):+9.1f}%  {'yes' if match[m, s] else 'NO'}")
    print("-" * len(hdr))
    print(f"ArmSim.state() alone: {1e6 * min(t_state):.1f} us")
    for m, t in trial.items():
        print(f"SimAgent.sample, T={T} trial, zero policy, gravity comp '{m}': {1e3 * t:.2f} ms/trial "
              f"({1e6 * t / T:.0f} us/step, {T / t:.0f} steps/s, {T / cfg.control_rate_hz / t:.0f}x real time)")
    for s in sims.values():
        s.close()


if __name__ == "__main__":
    main()
