"""GPS beside the lecture's other model-based learners on the Panda reach: trials until all 4 targets
are < 2 cm, per method and seed, under one trial cap.

    python bench/model_based_curves.py [--methods lqr_flm mbpo dyna bptt] [--seeds 0 1 2]
        [--trial-cap 300] [--jobs 2] [--out runs/model_based]
        [--plot ros2_ws/src/gps_ros/doc/img/model_based_curves.png]

Each (method, seed) is ``gps-ros train --config CONFIG --seed S --out OUT/<method>-seed<S>`` in a
subprocess with one torch thread (``--jobs`` at a time) and ``--iterations`` = the cap over the
trials per iteration; a directory that already holds the run is resumed (``--resume``), so an
interrupted bench, or runs made by hand in that layout, are reused.  The configs share the agent
(conditions, horizon T = 100, start pose) and cost of ``panda_reach.yaml``; every method runs one
trial per condition per iteration, counted the same way (discarded trials included).

The distance compared: for LQR-FLM the final distance of the iteration's trials (the local
controllers with their exploration noise, GPS's own figure); for MBPO, Dyna and BPTT the
deterministic policy's noiseless evaluation trial after the iteration (``eval_final_distance``,
the way SAC is evaluated; those trials are not counted).  Printed: a markdown table (trials to
all < 2 cm per seed, or "–" within the cap; the worst condition's distance at the end; wall time
per run) and the worst-condition distance against trials (median and min-max band over seeds).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench_runs import ROOT

CONFIGS = {"lqr_flm": "panda_reach.yaml", "mbpo": "panda_reach_mbpo.yaml",
           "dyna": "panda_reach_dyna.yaml", "bptt": "panda_reach_bptt.yaml"}
LABEL = {"lqr_flm": "LQR-FLM (GPS local controllers)", "mbpo": "MBPO", "dyna": "Dyna",
         "bptt": "BPTT through the model"}
CONFIG_DIR = ROOT / "ros2_ws/src/gps_ros/config"


def _rows(run: Path) -> list:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(method: str, seed: int, out: Path, iterations: int) -> Path:
    run = out / f"{method}-seed{seed}"
    rows = _rows(run)
    if rows and rows[-1]["iteration"] >= iterations:
        return run
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cli = [sys.executable, "-m", "gps_ros.cli", "train", "--quiet", "--iterations", str(iterations)]
    if (run / "config.yaml").exists():
        cmd = cli + ["--resume", str(run)]
    else:
        cmd = cli + ["--config", str(CONFIG_DIR / CONFIGS[method]), "--seed", str(seed),
                     "--out", str(run)]
    t0 = time.time()
    print(f"[{method} seed {seed}] {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"[{method} seed {seed}] done in {time.time() - t0:.0f} s", flush=True)
    return run


def curve(method: str, run: Path):
    """(trials (I,), worst distance (I,) in m, wall time in s) of a run."""
    rows = _rows(run)
    key = "final_distance" if method == "lqr_flm" else "eval_final_distance"
    return (np.array([r["trials"] for r in rows]), np.array([max(r[key]) for r in rows]),
            float(sum(r["time"]["total"] for r in rows)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["lqr_flm", "mbpo", "dyna", "bptt"],
                    choices=list(CONFIGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trial-cap", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/model_based"))
    ap.add_argument("--plot", default="ros2_ws/src/gps_ros/doc/img/model_based_curves.png")
    ap.add_argument("--threshold", type=float, default=0.02)
    ap.add_argument("--summarise-only", action="store_true",
                    help="train nothing: the table and plot of the runs in OUT as they are")
    args = ap.parse_args(argv)
    M = 4                                  # panda_reach's conditions, 1 trial each per iteration
    iterations = args.trial_cap // M
    jobs = [(m, s) for m in args.methods for s in args.seeds]
    if args.summarise_only:
        runs = {(m, s): args.out / f"{m}-seed{s}" for m, s in jobs}
        jobs = [j for j in jobs if _rows(runs[j])]
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = dict(zip(jobs, pool.map(lambda j: train(*j, args.out, iterations), jobs)))
    print(f"\n| method | seeds | trials until all 4 < 2 cm (cap {args.trial_cap}) | trials run | "
          "worst distance at the last iteration (cm) | best worst distance (cm, at trials) | "
          "iteration time per run |")
    print("|---|---|---|---|---|---|---|")
    series = []
    for m in args.methods:
        seeds = [s for s in args.seeds if (m, s) in jobs]
        if not seeds:
            continue
        res = [curve(m, runs[(m, s)]) for s in seeds]
        hits = []
        for trials, worst, _ in res:
            ok = np.flatnonzero(worst < args.threshold)
            hits.append(f"{trials[ok[0]]}" if ok.size else "–")
        last = ", ".join(f"{100 * w[-1]:.1f}" for _, w, _ in res)
        ran = ", ".join(str(t[-1]) for t, _, _ in res)
        best = ", ".join(f"{100 * w.min():.1f} ({t[np.argmin(w)]})" for t, w, _ in res)
        print(f"| {LABEL[m]} | {', '.join(map(str, seeds))} | {', '.join(hits)} | {ran} | {last} | "
              f"{best} | {np.median([r[2] for r in res]) / 60:.0f} min (median) |", flush=True)
        series.append((LABEL[m], seeds, res))
    if args.plot:
        plot(series, args.threshold, args.plot)
    return 0


def plot(series, threshold: float, path) -> None:
    """The worst condition's distance against trials: one line per run, a colour per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for i, (label, seeds, res) in enumerate(series):
        for j, (s, (trials, worst, _)) in enumerate(zip(seeds, res)):
            ax.plot(trials, 100 * worst, color=f"C{i}", lw=1.2, alpha=0.85,
                    ls=("-", "--", ":")[j % 3], label=f"{label}, seed {s}")
    ax.axhline(100 * threshold, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trials (all conditions)")
    ax.set_ylabel("worst condition's final distance (cm)")
    ax.set_title("Panda reach, 4 targets, 1 trial per condition per iteration; GPS: its trials, "
                 "the others: their deterministic policy", fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = ROOT / path
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
