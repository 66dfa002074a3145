"""Learning curves on the reach task: worst-condition final distance vs trials, per dynamics prior.

    python bench/prior_curves.py [--seeds 0 1 2 3 4] [--iterations 6] [--priors gmm_prior nn_prior linear_regression]
                                 [--set KEY=VALUE ...] [--out runs/prior_curves] [--plot docs/img/prior_curves.png]

Runs ``gps-ros train`` in-process on the shipped reach config (plus ``--set`` overrides) once per
prior and seed, into ``--out/<prior>-seed<S>``, then prints per prior the trials per condition until
all 4 targets are < 2 cm (the first iteration whose trials all end < 2 cm) for every seed, and
plots the worst condition's final distance against the number of trials (median over seeds, band
min-max) to ``--plot``.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from gps_ros.config import load_config
from gps_ros.train import train

ROOT = Path(__file__).resolve().parents[1]
LABEL = {"gmm_prior": "GMM prior", "nn_prior": "neural-network prior",
         "linear_regression": "no prior"}


def run(prior, seed, args):
    cfg = load_config(ROOT / args.config, [*args.set, f"dynamics.type={prior}"])
    cfg.seed = seed
    out = ROOT / args.out / f"{prior}-seed{seed}"
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    train(cfg, out, iterations=args.iterations, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    M = len(rows[0]["final_distance"])
    trials = np.array([r["trials"] for r in rows]) / M
    worst = np.array([max(r["final_distance"]) for r in rows])
    return trials, worst, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="ros2_ws/src/gps_ros/config/panda_reach.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--priors", nargs="+", default=["gmm_prior", "nn_prior", "linear_regression"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--out", default="runs/prior_curves")
    ap.add_argument("--plot", default="docs/img/prior_curves.png")
    ap.add_argument("--threshold", type=float, default=0.02)
    args = ap.parse_args()
    curves = {}
    print("| prior | trials per condition until all 4 < 2 cm, seeds " + " ".join(map(str, args.seeds))
          + " | worst distance at the last iteration (cm) | wall time per run |")
    print("|---|---|---|---|")
    for prior in args.priors:
        res = [run(prior, s, args) for s in args.seeds]
        curves[prior] = res
        hits = []
        for trials, worst, _ in res:
            ok = np.flatnonzero(worst < args.threshold)
            hits.append(f"{trials[ok[0]]:.0f}" if ok.size else "–")
        last = ", ".join(f"{100 * w[-1]:.1f}" for _, w, _ in res)
        walls = [r[2] for r in res]
        print(f"| {LABEL.get(prior, prior)} | {', '.join(hits)} | {last} | "
              f"{np.median(walls):.0f} s (median) |", flush=True)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for prior, res in curves.items():
            trials = res[0][0]
            W = 100 * np.stack([w for _, w, _ in res])
            line, = ax.plot(trials, np.median(W, axis=0), marker="o", label=LABEL.get(prior, prior))
            ax.fill_between(trials, W.min(axis=0), W.max(axis=0), color=line.get_color(), alpha=0.2)
        ax.axhline(100 * args.threshold, color="k", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("trials per condition")
        ax.set_ylabel("worst condition's final distance (cm)")
        ax.set_title(f"Panda reach, 4 targets, 1 trial per condition per iteration "
                     f"(seeds {args.seeds[0]}–{args.seeds[-1]}: median, min–max)", fontsize=9)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        plot = ROOT / args.plot
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=110)
        print(f"plot: {plot}")


if __name__ == "__main__":
    main()
