"""Contact stability of the peg-insertion scene at several physics rates.

    python bench/bench_peg_contact.py [--rates 240 480 1000] [--config .../panda_peg.yaml]

A scripted joint-space PD controller (inverse kinematics for "above the hole" and "tip on the
floor", M-scaled gains, stable at the 20 Hz control rate) runs four cases per hole of the config:

* ``insert``   straight down into the hole, then 2 s pressing 5 mm past the floor;
* ``rim``      aimed 4 mm off the hole axis (more than the clearance): the tip lands on the rim;
* ``press``    driving the tip 5 cm into the block's top face 3 cm off the hole with 2.5x the
               gains (torques clipped at the limits) for 2 s: a learning controller's worst push;
* ``slide``    dragging the pressed tip sideways into the hole edge.

For each it prints the final insertion depth, the deepest penetration of the peg into the block
or table (PyBullet's contact distance, all contact points; contact softness), the largest joint speed (rad/s; blow-ups show here), the
largest step-to-step tip jump while pressing (chatter) and the wall time per 5 s trial.  The
physics rate is a trade: penetration and chatter fall with the rate, cost rises linearly.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pybullet as p

from gps_ros.config import load_config
from gps_ros.sim.arm import ArmSim

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "ros2_ws/src/gps_ros/config/panda_peg.yaml"


def run_case(sim, m, case, q0):
    lay = sim.layout
    sim.reset(m)
    eet = sim.ee_targets[0]
    hd = sim.peg.hole_depth
    off = {"insert": [0, 0, 0], "rim": [0.004 + sim.peg.clearance, 0, 0], "press": [0.03, 0, 0],
           "slide": [0.03, 0, 0]}[case]
    goal_above = eet + off + [0, 0, 0.06 + (hd if case in ("press", "slide") else 0)]
    goal_down = eet + off + [0, 0, -0.005 + (hd if case in ("press", "slide") else 0)]
    q_above, q_down = sim.ik_gripper_down(goal_above, q0), sim.ik_gripper_down(goal_down, q0)
    q_end = sim.ik_gripper_down(eet + [0, 0, hd - 0.005], q0) if case == "slide" else q_down
    ik_press = sim.ik_gripper_down(goal_down - [0, 0, 0.05], q0)
    x = sim.reset(m)
    M = sim.mass_matrix(q0)
    tip_s = lay.ee_points.start + 3 * sim._tip_index
    maxv, pen, jump, prev = 0.0, 0.0, 0.0, None
    t0 = time.perf_counter()
    for t in range(sim.cfg.T):
        a = min(1.0, max(0.0, (t - 30) / 30))
        qg = q_above + (q_down - q_above) * a
        if case == "slide" and t >= 60:
            qg = q_down + (q_end - q_down) * min(1.0, (t - 60) / 20)
        if case == "press" and t >= 60:
            qg = ik_press
            u = M @ (150 * (qg - x[:7]) - 18 * x[7:14])     # 2.5x stiffer, clipped by step()
        else:
            u = M @ (60 * (qg - x[:7]) - 12 * x[7:14])
        x = sim.step(u)
        for body in (sim.scene_bodies["block"], sim.scene_bodies["table"]):
            for c in p.getContactPoints(sim.robot, body, physicsClientId=sim.physics_client):
                pen = max(pen, -float(c[8]))
        maxv = max(maxv, float(np.abs(x[7:14]).max()))
        tip = x[tip_s:tip_s + 3]
        if t >= 70 and prev is not None:
            jump = max(jump, float(np.linalg.norm(tip - prev)))
        prev = tip.copy()
    dt = time.perf_counter() - t0
    depth, ok = sim.insertion(x)
    return dict(depth=float(depth), inserted=bool(ok), pen=pen, maxv=maxv, jump=jump, ms=1000 * dt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT))
    ap.add_argument("--rates", type=float, nargs="+", default=[240.0, 480.0, 960.0])
    ap.add_argument("--conditions", type=int, nargs="+", default=None)
    args = ap.parse_args(argv)
    print(f"{'rate':>5} {'case':7} {'depth mm':>9} {'ok':>3} {'penetr. mm':>10} {'max qd':>7} "
          f"{'chatter mm':>10} {'ms/trial':>8}")
    for rate in args.rates:
        cfg = load_config(args.config, [f"agent.physics_rate_hz={rate}"])
        sim = ArmSim(cfg.agent)
        q0 = np.array(cfg.agent.start_joint_positions)
        conds = args.conditions if args.conditions is not None else range(len(cfg.agent.conditions))
        for case in ("insert", "rim", "press", "slide"):
            rows = [run_case(sim, m, case, q0) for m in conds]
            print(f"{rate:5.0f} {case:7} {1000 * np.mean([r['depth'] for r in rows]):9.1f} "
                  f"{sum(r['inserted'] for r in rows):3d} {1000 * max(r['pen'] for r in rows):10.2f} "
                  f"{max(r['maxv'] for r in rows):7.2f} {1000 * max(r['jump'] for r in rows):10.2f} "
                  f"{np.mean([r['ms'] for r in rows]):8.0f}")
        sim.close()


if __name__ == "__main__":
    main()
