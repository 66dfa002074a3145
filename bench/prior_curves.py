"""Learning curves on the reach task: worst-condition final distance vs trials, per dynamics prior.

    python bench/prior_curves.py [--seeds 0 1 2 3 4] [--iterations 6] [--priors gmm_prior nn_prior gp_prior linear_regression]
                                 [--set KEY=VALUE ...] [--out runs/prior_curves] [--plot ros2_ws/src/gps_ros/doc/img/prior_curves.png]

Runs ``gps-ros train`` in-process on the shipped reach config (plus ``--set`` overrides) once per
prior and seed, into ``--out/<prior>-seed<S>``, then prints per prior the trials per condition until
all 4 targets are < 2 cm (the first iteration whose trials all end < 2 cm) for every seed, and
plots the worst condition's final distance against the number of trials (median over seeds, band
min-max) to ``--plot``.
"""
import argparse

import numpy as np

from bench_runs import plot_worst_bands, train_seed

LABEL = {"gmm_prior": "GMM prior", "nn_prior": "neural-network prior", "gp_prior": "GP prior",
         "linear_regression": "no prior"}


def run(prior, seed, args):
    rows, wall, _ = train_seed(args.config, [*args.set, f"dynamics.type={prior}"], seed,
                               f"{args.out}/{prior}-seed{seed}", args.iterations)
    M = len(rows[0]["final_distance"])
    trials = np.array([r["trials"] for r in rows]) / M
    worst = np.array([max(r["final_distance"]) for r in rows])
    return trials, worst, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="ros2_ws/src/gps_ros/config/panda_reach.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--priors", nargs="+", default=["gmm_prior", "nn_prior", "gp_prior", "linear_regression"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--out", default="runs/prior_curves")
    ap.add_argument("--plot", default="ros2_ws/src/gps_ros/doc/img/prior_curves.png")
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
        plot_worst_bands([(LABEL.get(p, p), res[0][0], np.stack([w for _, w, _ in res]))
                          for p, res in curves.items()], args.threshold,
                         f"Panda reach, 4 targets, 1 trial per condition per iteration "
                         f"(seeds {args.seeds[0]}–{args.seeds[-1]}: median, min–max)", args.plot)

if __name__ == "__main__":
    main()
