#!/usr/bin/env python3
"""The model prior against the GMM prior: trials to reach every target, per robot and seed.

    python bench/model_prior.py [--robots panda iiwa ur5 so101] [--seeds 0 1 2] [--iterations 6]
                                [--variants gmm model wrong] [--wrong inertia|payload]
                                [--scale 1.3] [--payload 1.0] [--out runs/bench_model_prior]
                                [--set KEY=VALUE ...]

For each robot (config/<robot>_reach.yaml, as shipped: 4 conditions, 1 trial per condition and
iteration) and seed it runs, one after the other (one thread each)::

    gps-ros train --config config/<robot>_reach.yaml --seed S --iterations 6 --out DIR  [--set ...]

with the variants

* ``gmm``: the shipped ``dynamics.type: gmm_prior``;
* ``model``: ``--set dynamics.type=model_prior`` (the robot's URDF, GMM on the residual);
* ``wrong``: the same with ``dynamics.model_urdf`` a deliberately wrong URDF -- every link's mass
  and inertia times ``--scale`` (``--wrong inertia``, default 1.3) or a ``--payload`` kg sphere on
  the EE link (``--wrong payload``); the simulator keeps the true URDF.  (In the velocity and
  position interfaces the model is kinematic: masses do not enter it, so ``wrong`` = ``model``.)

and reads metrics.jsonl: an iteration succeeds when every condition's final EE distance is below
2 cm; the table gives the first such iteration (= trials per target, with one trial per condition
and iteration; "-" if none within the iterations run), the final distances (cm) of iterations 1-3
(worst condition) and the run's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ros2_ws" / "src" / "gps_ros"
CONFIGS = PKG / "config"
THRESHOLD = 0.02


def wrong_urdf(robot: str, kind: str, scale: float, payload: float, out: Path) -> Path:
    """Write the deliberately wrong model URDF of ``robot`` to ``out`` and return its path."""
    sys.path.insert(0, str(PKG))
    from gps_ros.config import load_config
    from gps_ros.dynamics.model_prior import payload_urdf, scaled_inertia_urdf
    from gps_ros.task import robot_description

    cfg = load_config(CONFIGS / f"{robot}_reach.yaml")
    desc = robot_description(cfg.agent)
    text = (scaled_inertia_urdf(desc.urdf, scale) if kind == "inertia"
            else payload_urdf(desc.urdf, desc.ee_link, payload))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def run(robot: str, seed: int, iterations: int, out: Path, sets: list) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "gps_ros.cli", "train", "--config", str(CONFIGS / f"{robot}_reach.yaml"),
           "--seed", str(seed), "--iterations", str(iterations), "--out", str(out), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(PKG) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"error": tail[0] if tail else f"exit {proc.returncode}", "wall": wall}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    worst = [max(r["final_distance"]) for r in rows]
    hit = next((r["iteration"] for r, w in zip(rows, worst) if w < THRESHOLD), None)
    dyn = sum(r["time"]["dynamics"] for r in rows) / len(rows)
    return {"hit": hit, "worst": worst, "wall": wall, "dyn": dyn}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", nargs="+", default=["panda", "iiwa", "ur5", "so101"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--variants", nargs="+", default=["gmm", "model", "wrong"],
                    choices=["gmm", "model", "wrong", "model-nn"])
    ap.add_argument("--wrong", choices=["inertia", "payload"], default="inertia")
    ap.add_argument("--scale", type=float, default=1.3)
    ap.add_argument("--payload", type=float, default=1.0, help="kg")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_model_prior"))
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every run (diagnostics, e.g. "
                    "algorithm.kl_step=10); repeatable")
    args = ap.parse_args()
    out = Path(args.out)
    label = {"gmm": "gmm_prior", "model": "model_prior",
             "wrong": (f"model_prior, URDF x{args.scale:g} mass+inertia" if args.wrong == "inertia"
                       else f"model_prior, URDF +{args.payload:g} kg payload"),
             "model-nn": "model_prior, nn residual"}
    print("| robot | seed | prior | trials per target to < 2 cm | worst final distance it 1/2/3 (cm) "
          "| dynamics s/it | wall time |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for robot in args.robots:
        urdf = None
        if "wrong" in args.variants:
            urdf = wrong_urdf(robot, args.wrong, args.scale, args.payload,
                              out / f"{robot}_{args.wrong}.urdf")
        for seed in args.seeds:
            for v in args.variants:
                sets = {"gmm": [], "model": ["dynamics.type=model_prior"],
                        "wrong": ["dynamics.type=model_prior", f"dynamics.model_urdf={urdf}"],
                        "model-nn": ["dynamics.type=model_prior", "dynamics.model_residual=nn"]}[v]
                r = run(robot, seed, args.iterations, out / f"{robot}-{v}-seed{seed}",
                        list(args.extra) + sets)
                if "error" in r:
                    print(f"| {robot} | {seed} | {label[v]} | failed: {r['error']} | | | "
                          f"{r['wall']:.0f} s |", flush=True)
                    continue
                summary.setdefault((robot, v), []).append(r["hit"])
                w = " / ".join(f"{100 * d:.1f}" for d in r["worst"][:3])
                print(f"| {robot} | {seed} | {label[v]} | {r['hit'] or '-'} | {w} | {r['dyn']:.2f} | "
                      f"{r['wall']:.0f} s |", flush=True)
    print("\ntrials per target to < 2 cm on all targets (per seed; '-': not within the iterations)")
    for (robot, v), hits in summary.items():
        print(f"  {robot:6s} {label[v]:40s} {' '.join(str(h or '-') for h in hits)}")


if __name__ == "__main__":
    main()
