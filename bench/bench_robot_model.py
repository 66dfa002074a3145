"""The robot model's cost per control step: Pinocchio (gps_ros.robot.RobotModel) against
PyBullet's own kinematics and dynamics functions on the same URDF, for each shipped robot.

    python bench/bench_robot_model.py [--steps 5000] [--robots panda iiwa ur5 so101]

Per robot and library, the median and 99th percentile (µs) of
* the sampler's state on a real arm: forward kinematics of the EE points and their Jacobian at a
  joint state (PyBullet: reset every joint, ``getLinkState``, ``calculateJacobian`` per point;
  Pinocchio: ``TaskModel.state``, which computes both);
* the joint-space inertia M(q) (``calculateMassMatrix`` / ``crba``);
* the gravity torque g(q) (``calculateInverseDynamics`` at rest / ``computeGeneralizedGravity``);
and the largest difference between the two libraries' results over the poses (a check, the test
suite's tests/test_robot.py asserts it), plus the installed size of each library.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pybullet as p

from gps_ros.config import load_config
from gps_ros.sim.arm import ArmSim

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"panda": "panda_reach.yaml", "iiwa": "iiwa_reach.yaml", "ur5": "ur5_reach.yaml",
           "so101": "so101_reach.yaml"}


def timed(fn, poses, warmup: int = 200) -> np.ndarray:
    for q in poses[:warmup]:
        fn(q)
    out = np.empty(len(poses))
    clock = time.perf_counter_ns
    for i, q in enumerate(poses):
        t0 = clock()
        fn(q)
        out[i] = clock() - t0
    return out / 1e3


def size_mb(*paths) -> float:
    total = 0
    for path in paths:
        path = Path(path)
        files = [path] if path.is_file() else path.rglob("*")
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--robots", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = ap.parse_args(argv)
    rows = []
    for name in args.robots:
        cfg = load_config(ROOT / "ros2_ws/src/gps_ros/config" / CONFIGS[name])
        sim = ArmSim(cfg.agent)
        task, r, c = sim.task, sim.robot, sim.physics_client
        rng = np.random.default_rng(0)
        lo, hi = np.maximum(sim.joint_lower, -np.pi), np.minimum(sim.joint_upper, np.pi)
        poses = rng.uniform(lo, hi, size=(args.steps, sim.dU))
        qds = rng.normal(0, 0.5, size=(args.steps, sim.dU))
        arm, dofs = sim._arm, sim._dofs
        ai = [dofs.index(j) for j in arm]
        held = {dofs.index(j): v for j, v in zip(sim._held, sim._held_q)}
        pts = [list(v) for v in sim.ee_points_local]
        zeros = [0.0] * len(dofs)

        def full(q):
            out = list(zeros)
            for i, v in zip(ai, q):
                out[i] = float(v)
            for i, v in held.items():
                out[i] = v
            return out

        k = {"i": 0}

        def pb_state(q):
            qd = qds[k["i"] % len(qds)]
            k["i"] += 1
            for j, a, b in zip(arm, q, qd):
                p.resetJointState(r, j, float(a), float(b), physicsClientId=c)
            ls = p.getLinkState(r, sim.ee_index, computeLinkVelocity=1, computeForwardKinematics=1,
                                physicsClientId=c)
            qa = full(q)
            J = [p.calculateJacobian(r, sim.ee_index, pt, qa, zeros, zeros, physicsClientId=c)[0]
                 for pt in pts]
            return ls, J

        def pin_state(q):
            qd = qds[k["i"] % len(qds)]
            k["i"] += 1
            return task.state(q, qd, 0), task.ee_point_jacobian(q)

        p.setGravity(0, 0, -9.81, physicsClientId=c)
        results = {
            "state + Jacobian": (timed(pb_state, poses), timed(pin_state, poses)),
            "M(q)": (timed(lambda q: p.calculateMassMatrix(r, full(q), physicsClientId=c), poses),
                     timed(task.mass_matrix, poses)),
            "g(q)": (timed(lambda q: p.calculateInverseDynamics(r, full(q), zeros, zeros,
                                                                physicsClientId=c), poses),
                     timed(task.robot.gravity, poses)),
        }
        err_m = err_g = 0.0
        for q in poses[:200]:
            M = np.asarray(p.calculateMassMatrix(r, full(q), physicsClientId=c))[np.ix_(ai, ai)]
            g = np.asarray(p.calculateInverseDynamics(r, full(q), zeros, zeros, physicsClientId=c))[ai]
            err_m = max(err_m, np.abs(M - task.mass_matrix(q)).max() / np.abs(M).max())
            err_g = max(err_g, np.abs(g - task.robot.gravity(q)).max() / max(np.abs(g).max(), 1e-12))
        for what, (pb, pn) in results.items():
            rows.append(f"| {name} (n = {sim.dU}) | {what} | {np.median(pb):.1f} / {np.percentile(pb, 99):.1f} | "
                        f"{np.median(pn):.1f} / {np.percentile(pn, 99):.1f} | {np.median(pb) / np.median(pn):.1f}× |")
        rows.append(f"| {name} | max relative difference M, g over 200 poses | {err_m:.1e}, {err_g:.1e} | | |")
        sim.close()
    print("| robot | per call | PyBullet p50 / p99 (µs) | Pinocchio p50 / p99 (µs) | speed-up |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    import pinocchio
    import pybullet_data

    site = Path(p.__file__).parent
    pin_dirs = [site / "cmeel.prefix" / d for d in ("lib", "include", "bin")] + \
               [Path(pinocchio.__file__).parent]
    print(f"\ninstalled: pybullet {size_mb(p.__file__):.0f} MB (+ pybullet_data "
          f"{size_mb(pybullet_data.getDataPath()):.0f} MB, already a dependency); pin with its "
          f"dependencies (cmeel prefix lib/include/bin) {size_mb(*pin_dirs):.0f} MB; "
          f"example-robot-data {size_mb(site / 'cmeel.prefix' / 'share' / 'example-robot-data'):.0f} MB "
          f"(the robots extra)")
    print(f"python {sys.version.split()[0]}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
