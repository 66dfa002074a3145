"""Learning results for the README: LQR-FLM on the Panda reach task over several seeds.

    python bench/reach_results.py [--seeds 0 1 2] [--config ros2_ws/src/gps_ros/config/panda_reach.yaml]

Runs `gps-ros train` (in-process) once per seed into runs/results/<name>-seed<S>, and prints one
markdown row per seed: iterations until every condition's mean final EE distance is below 2 cm,
trials used by then, final distances at the last iteration, and wall time.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

from gps_ros.config import load_config
from gps_ros.train import train

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="ros2_ws/src/gps_ros/config/panda_reach.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--threshold", type=float, default=0.02)
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        cfg = load_config(ROOT / args.config)
        cfg.seed = seed
        out = ROOT / args.out / f"{cfg.name}-seed{seed}"
        if out.exists():
            shutil.rmtree(out)
        t0 = time.perf_counter()
        train(cfg, out, progress=False)
        wall = time.perf_counter() - t0
        metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        hit = next((m for m in metrics if max(m["final_distance"]) < args.threshold), None)
        last = metrics[-1]
        dist = ", ".join(f"{100 * d:.1f}" for d in last["final_distance"])
        cmd = f"`gps-ros train --config {args.config} --seed {seed}`"
        rows.append(f"| {cmd} | {seed} | {hit['iteration'] if hit else 'not reached'} | "
                    f"{hit['trials'] if hit else '–'} | {dist} | {wall:.0f} s |")
        print(rows[-1], flush=True)
    print("\n| command | seed | iterations to < 2 cm (all) | trials by then | "
          "final distances at last iteration (cm) | wall time |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
