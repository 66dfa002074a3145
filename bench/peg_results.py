"""Peg insertion results for the README: LQR-FLM (or PI² / PILQR) over seeds, trials to insertion.

    python bench/peg_results.py --seeds 0 1 2 3 4 [--config ros2_ws/src/gps_ros/config/panda_peg.yaml]
        [--set algorithm.traj_opt=pilqr] [--iterations 15] [--out runs/peg_results]
        [--plot ros2_ws/src/gps_ros/doc/img/peg_curves.png]

Trains each seed in-process (``gps_ros.train.train``, the same as ``gps-ros train --config ...
--seed S``), then replays every iteration's *new* controllers without noise, once per condition
(evaluation rollouts, not counted as training trials), and reads the peg's insertion depth at the
last step (:func:`gps_ros.sim.peg.insertion`).  "Trials to insertion" is the number of training
trials run before the first iteration whose controllers insert on every condition (tip below
``peg.success_depth`` of the hole depth); "holds" says whether every later iteration does too
(if not: the trial count from which every iteration does, or "no" if the last one does not).
Also reported: the fraction of the last iteration's (noisy, exploring) training trials that
inserted, and the wall time of the training.

Writes OUT/peg_results.csv (seed, iteration, trials, depth per condition) and, with ``--plot``,
insertion depth (noiseless, mean and worst over conditions) vs training trials, one line per seed.
``--eval-only`` re-evaluates existing runs in OUT.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np

from gps_ros.agents import SimAgent
from gps_ros.config import load_config
from gps_ros.evaluate import evaluate_controllers
from gps_ros.train import train

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = "ros2_ws/src/gps_ros/config/panda_peg.yaml"


def evaluate_run(run: Path, agent) -> list:
    """[(iteration, trials, depths (M,), inserted (M,), noisy inserted fraction (M,))]."""
    noisy = {r["iteration"]: r.get("inserted") for r in
             (json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())}
    return [(it, trials, depth, ok, np.array(noisy.get(it) or [np.nan] * len(depth), dtype=float))
            for it, trials, depth, ok in evaluate_controllers(run, agent)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=DEFAULT)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--out", default="runs/peg_results")
    ap.add_argument("--plot", default=None, help="write the insertion-depth curves here (png)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate existing runs in OUT")
    args = ap.parse_args(argv)

    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    cfg0 = load_config(ROOT / args.config, args.overrides)
    hole = cfg0.agent.peg.hole_depth
    sets = "".join(f" --set {o}" for o in args.overrides)
    its = f" --iterations {args.iterations}" if args.iterations else ""
    agent = SimAgent(cfg0.agent)
    rows, curves, csv_rows = [], {}, []
    try:
        for seed in args.seeds:
            cfg = cfg0.model_copy(deep=True)
            cfg.seed = seed
            run = out_root / f"{cfg.name}-seed{seed}"
            wall = float("nan")
            if not args.eval_only:
                if run.exists():
                    shutil.rmtree(run)
                t0 = time.perf_counter()
                train(cfg, run, iterations=args.iterations, progress=False)
                wall = time.perf_counter() - t0
                (run / "wall_time_s").write_text(f"{wall:.1f}\n")
            elif (run / "wall_time_s").exists():
                wall = float((run / "wall_time_s").read_text())
            ev = evaluate_run(run, agent)
            curves[seed] = ev
            for it, trials, depth, ok, noisy in ev:
                csv_rows.append([seed, it, trials] + [f"{d:.4f}" for d in depth] + [int(ok.all())])
            first = next((e for e in ev if e[3].all()), None)
            holds = first is not None and all(e[3].all() for e in ev if e[0] >= first[0])
            stable = None                      # from here on every iteration inserts on all
            for e in reversed(ev):
                if not e[3].all():
                    break
                stable = e
            last = ev[-1]
            cmd = f"`gps-ros train --config {args.config} --seed {seed}{sets}{its}`"
            rows.append(f"| {cmd} | {seed} | {first[1] if first else 'not reached'} | "
                        f"{'yes' if holds else (stable[1] if stable else 'no') if first else '–'} | "
                        f"{', '.join(f'{100 * d:.1f}' for d in last[2])} | "
                        f"{100 * np.nanmean(last[4]):.0f} % | {wall:.0f} s |")
            print(rows[-1], flush=True)
    finally:
        agent.close()
    with open(out_root / "peg_results.csv", "w", newline="") as f:
        w = csv.writer(f)
        M = len(cfg0.agent.conditions)
        w.writerow(["seed", "iteration", "trials"] + [f"depth_c{m:02d}_m" for m in range(M)] + ["all_inserted"])
        w.writerows(csv_rows)
    print(f"\nhole depth {100 * hole:.1f} cm, success: tip below {100 * cfg0.agent.peg.success_depth:.0f} %")
    print("| command | seed | trials to insertion (all 4, noiseless) | holds after (or: every "
          "iteration from this trial count on) | final depth per "
          "condition (cm) | last iteration's training trials inserted | wall time |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for seed, ev in curves.items():
            trials = [e[1] for e in ev]
            line, = ax.plot(trials, [100 * e[2].mean() for e in ev], label=f"seed {seed} (mean)")
            ax.plot(trials, [100 * e[2].min() for e in ev], ls=":", color=line.get_color())
        ax.axhline(100 * hole, color="k", lw=0.8, label="hole depth")
        ax.axhline(100 * hole * cfg0.agent.peg.success_depth, color="k", ls="--", lw=0.8,
                   label="success (90 %)")
        ax.set_xlabel("training trials (all conditions)")
        ax.set_ylabel("insertion depth, noiseless rollout (cm)")
        ax.set_title(f"{cfg0.name}: {cfg0.algorithm.traj_opt if hasattr(cfg0.algorithm, 'traj_opt') else 'lqr'}"
                     " (solid: mean, dotted: worst condition)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
