"""The C-step on the reach task: LQR-FLM vs PI² vs PILQR (``algorithm.traj_opt``) over seeds.

    python bench/traj_opt_compare.py [--seeds 0 1 2] [--iterations 10] [--optimizers lqr pi2 pilqr]
                                     [--samples pi2=5 --samples pilqr=5] [--set KEY=VALUE ...]
                                     [--threshold 0.02] [--metric final_distance]
                                     [--config ros2_ws/src/gps_ros/config/panda_reach.yaml]
                                     [--out runs/traj_opt_compare] [--csv ...] [--plot ...]

Runs ``gps-ros train`` in-process on ``--config`` (plus ``--set`` overrides and
``algorithm.traj_opt=<optimiser>``) once per optimiser and seed into ``--out/<opt>-seed<S>``.
PI² can only reweight what was sampled, so pi2 and pilqr get ``samples_per_condition`` from
``--samples OPT=N`` (default 5 each; lqr keeps the config's, 1 in the shipped reach config).

Prints one markdown row per optimiser: trials per condition until every condition passes (the first
iteration whose ``--metric`` passes on all conditions: per-condition values below ``--threshold``
for a ``*distance*`` key, at or above it otherwise, e.g. a ``success`` rate), the worst final
distance at the last iteration, and the wall time per run.  Writes every iteration of every run to
``--csv`` and plots the worst condition's final distance against trials per condition (median over
seeds, band min–max) to ``--plot``.
"""
import argparse
import csv

import numpy as np

from bench_runs import ROOT, plot_worst_bands, train_seed

LABEL = {"lqr": "LQR-FLM", "pi2": "PI²", "pilqr": "PILQR"}


def passes(row, metric, threshold):
    """Whether every condition passes ``metric`` in a metrics row (None if the row lacks it)."""
    vals = row.get(metric)
    if vals is None:
        return None
    vals = np.atleast_1d(np.asarray(vals, dtype=float))
    return bool(np.all(vals < threshold) if "distance" in metric else np.all(vals >= threshold))


def run(opt, seed, args):
    sets = [*args.set, f"algorithm.traj_opt={opt}"]
    if opt in args.samples:
        sets.append(f"algorithm.samples_per_condition={args.samples[opt]}")
    rows, wall, cfg = train_seed(args.config, sets, seed, f"{args.out}/{opt}-seed{seed}",
                                 args.iterations)
    return {"opt": opt, "seed": seed, "rows": rows, "wall": wall,
            "samples": cfg.algorithm.samples_per_condition}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="ros2_ws/src/gps_ros/config/panda_reach.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--optimizers", nargs="+", default=["lqr", "pi2", "pilqr"],
                    choices=["lqr", "pi2", "pilqr"])
    ap.add_argument("--samples", action="append", default=[], metavar="OPT=N",
                    help="samples_per_condition for an optimiser (default pi2=5, pilqr=5)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--threshold", type=float, default=0.02)
    ap.add_argument("--metric", default="final_distance",
                    help="per-condition metrics key that decides 'passed' (default final_distance)")
    ap.add_argument("--out", default="runs/traj_opt_compare")
    ap.add_argument("--csv", default="runs/traj_opt_compare/traj_opt_compare.csv")
    ap.add_argument("--plot", default="runs/traj_opt_compare/traj_opt_compare.png")
    args = ap.parse_args()
    samples = {"pi2": 5, "pilqr": 5}
    for s in args.samples:
        opt, _, n = s.partition("=")
        if opt not in LABEL or not n.isdigit():
            ap.error(f"--samples wants OPT=N with OPT lqr, pi2 or pilqr, got {s!r}")
        samples[opt] = int(n)
    args.samples = samples

    results = {}
    print(f"| optimiser | samples / condition / iteration | trials per condition until all "
          f"pass ({args.metric}, seeds {' '.join(map(str, args.seeds))}) | worst final distance at "
          f"iteration {args.iterations} (cm) | wall time per run |")
    print("|---|---|---|---|---|")
    table = []
    for opt in args.optimizers:
        res = [run(opt, s, args) for s in args.seeds]
        results[opt] = res
        hits = []
        for r in res:
            M = len(r["rows"][0]["final_distance"])
            hit = next((row for row in r["rows"] if passes(row, args.metric, args.threshold)), None)
            hits.append(f"{hit['trials'] / M:.0f}" if hit else "–")
        worst = ", ".join(f"{100 * max(r['rows'][-1]['final_distance']):.1f}" for r in res)
        walls = ", ".join(f"{r['wall']:.0f}" for r in res)
        line = (f"| {LABEL[opt]} (`--set algorithm.traj_opt={opt}`) | {res[0]['samples']} | "
                f"{' / '.join(hits)} | {worst} | {walls} s |")
        table.append(line)
        print(line, flush=True)

    csv_path = ROOT / args.csv
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["optimizer", "seed", "samples_per_condition", "iteration",
                    "trials_per_condition", "final_distance_max", "final_distance_mean",
                    f"{args.metric}_pass", "cost", "wall_s_run"])
        for opt, res in results.items():
            for r in res:
                for row in r["rows"]:
                    M = len(row["final_distance"])
                    w.writerow([opt, r["seed"], r["samples"], row["iteration"], row["trials"] / M,
                                max(row["final_distance"]), float(np.mean(row["final_distance"])),
                                passes(row, args.metric, args.threshold), row["cost"],
                                round(r["wall"], 1)])
    print(f"csv: {csv_path}")

    if args.plot:
        series = []
        for opt, res in results.items():
            M = len(res[0]["rows"][0]["final_distance"])
            trials = np.array([row["trials"] for row in res[0]["rows"]]) / M
            worst = [[max(row["final_distance"]) for row in r["rows"]] for r in res]
            series.append((f"{LABEL[opt]} ({res[0]['samples']} / iteration)", trials, worst))
        plot_worst_bands(series, args.threshold, f"Panda reach, C-step comparison (seeds "
                         f"{args.seeds[0]}–{args.seeds[-1]}: median, min–max)", args.plot, logx=True)

    print("\n" + "\n".join(table))


if __name__ == "__main__":
    main()
