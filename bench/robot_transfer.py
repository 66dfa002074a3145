"""A robot no shipped config names, put into the shipped reach config of a command interface with
nothing else changed: does it learn reach?

    python bench/robot_transfer.py --robots ur10 so100 xarm7 kinova z1 --modes effort velocity position
    python bench/robot_transfer.py --urdf my_arm.urdf --ee-link tool0 --start 0 -1.2 1.5 0 0 0 --modes velocity

For each robot and command interface: the shipped reach config of that interface
(``iiwa_reach.yaml`` effort, ``ur5_reach.yaml`` velocity, ``so101_reach.yaml`` position) with its
``agent.robot`` replaced by the robot's URDF and EE link, its start pose, and targets placed as the
shipped config places its own (the shipped targets' offsets from its robot's start EE position,
scaled by the ratio of the two arms' reach); cost, initial controller, algorithm, noise and gains
unchanged.  Trains ``--iterations`` (1 trial per target each) per seed and prints one markdown row:
the worst target's final distance per iteration and the first iteration with every target below
2 cm.  The presets are robots of the example-robot-data wheel (``pip install 'gps_ros[robots]'``)
with a start pose away from singularities and joint limits.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from gps_ros.config import load_config, parse_config
from gps_ros.robot import RobotModel, load_description
from gps_ros.task import TaskModel
from gps_ros.train import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "ros2_ws" / "src" / "gps_ros" / "config"
BASE = {"effort": "iiwa_reach.yaml", "velocity": "ur5_reach.yaml", "position": "so101_reach.yaml"}
E = "package://example-robot-data/robots"
PRESETS = {
    "ur10": dict(urdf=f"{E}/ur_description/urdf/ur10_robot.urdf", ee_link="tool0", base_link="base_link",
                 start=[0, -1.57, 1.57, -1.57, -1.57, 0]),
    "so100": dict(urdf=f"{E}/so_arm_description/urdf/so100.urdf", ee_link="gripper",
                  start=[0, 1.5, -1.5, 0.5, 0]),
    "xarm7": dict(urdf=f"{E}/xarm_description/urdf/xarm7.urdf", ee_link="link7",
                  start=[0, 0.3, 0, 1.2, 0, 0.9, 0]),
    "kinova": dict(urdf=f"{E}/kinova_description/robots/kinova.urdf", ee_link="j2s6s200_end_effector",
                   start=[0, 3.6, 1.2, 0, 1.0, 0]),
    "z1": dict(urdf=f"{E}/z1_description/urdf/z1.urdf", ee_link="link06", start=[0, 1.5, -1.5, 0, 0, 0]),
}


def transfer_config(robot: dict, mode: str) -> dict:
    """The shipped reach config of ``mode`` with ``robot`` (urdf, ee_link, [base_link], start) in it."""
    data = yaml.safe_load((CONFIGS / BASE[mode]).read_text())
    shipped = TaskModel(load_config(CONFIGS / BASE[mode]).agent)
    desc = load_description(robot["urdf"], robot["ee_link"], robot.get("base_link"), None, mode)
    model = RobotModel(desc)
    start = np.asarray(robot["start"], dtype=np.float64)
    ee0 = model.points(start, [[0.0, 0.0, 0.0]])[0]
    shipped_ee0 = shipped.robot.points(shipped.start_pose(0), [[0.0, 0.0, 0.0]])[0]
    scale = model.reach()[1] / shipped.robot.reach()[1]
    targets = ee0 + (np.array([c["target"] for c in data["agent"]["conditions"]]) - shipped_ee0) * scale
    agent = data["agent"]
    agent["robot"] = {"urdf": robot["urdf"], "ee_link": robot["ee_link"], "command": mode,
                      **({"base_link": robot["base_link"]} if robot.get("base_link") else {})}
    agent.pop("held_joints", None)                  # the new robot's: default 0 within limits
    agent["start_joint_positions"] = start.tolist()
    agent["conditions"] = [{"target": np.round(t, 4).tolist()} for t in targets]
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robots", nargs="*", default=[], choices=sorted(PRESETS))
    ap.add_argument("--urdf", help="a robot of your own (with --ee-link and --start)")
    ap.add_argument("--ee-link")
    ap.add_argument("--base-link")
    ap.add_argument("--start", type=float, nargs="+")
    ap.add_argument("--modes", nargs="+", default=["effort", "velocity", "position"], choices=sorted(BASE))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--iterations", type=int, default=6)
    args = ap.parse_args()
    robots = {name: PRESETS[name] for name in args.robots}
    if args.urdf:
        robots[Path(args.urdf).stem] = dict(urdf=str(Path(args.urdf).resolve()), ee_link=args.ee_link,
                                            base_link=args.base_link, start=args.start)
    print("| robot | command | seed | worst target per iteration (cm) | iterations to < 2 cm | wall |")
    print("|---|---|---|---|---|---|")
    for name, robot in robots.items():
        for mode in args.modes:
            data = transfer_config(robot, mode)
            for seed in args.seeds:
                cfg = parse_config(copy.deepcopy(data), f"{name} in {BASE[mode]}")
                cfg.seed, cfg.iterations = seed, args.iterations
                out = Path(tempfile.mkdtemp(prefix=f"transfer_{name}_"))
                t0 = time.perf_counter()
                try:
                    train(cfg, out, progress=False)
                    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                worst = [max(r["final_distance"]) for r in rows]
                hit = next((i + 1 for i, w in enumerate(worst) if w < 0.02), None)
                print(f"| {name} | {mode} | {seed} | {', '.join(f'{100 * w:.1f}' for w in worst)} | "
                      f"{hit or 'not within ' + str(args.iterations)} | {time.perf_counter() - t0:.0f} s |",
                      flush=True)


if __name__ == "__main__":
    main()
