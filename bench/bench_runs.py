"""Shared by the learning-curve benches (prior_curves.py, traj_opt_compare.py): one in-process
training run per seed, and the worst-condition distance plot (median over seeds, band min-max)."""
import json
import shutil
import time
from pathlib import Path

import numpy as np

from gps_ros.config import load_config
from gps_ros.train import train

ROOT = Path(__file__).resolve().parents[1]


def train_seed(config, overrides, seed, out, iterations=None):
    """``gps-ros train --config CONFIG --seed SEED --set ...`` in-process into a fresh ``out``;
    returns (metrics rows, wall time in s, the config)."""
    cfg = load_config(ROOT / config, list(overrides))
    cfg.seed = seed
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    train(cfg, out, iterations=iterations, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows, wall, cfg


def plot_worst_bands(series, threshold, title, path, logx=False):
    """``series``: [(label, trials per condition (I,), worst final distance in m (seeds, I))];
    median line and min-max band per label, log distance axis, the threshold dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, trials, worst in series:
        W = 100 * np.asarray(worst)
        line, = ax.plot(trials, np.median(W, axis=0), marker="o", label=label)
        ax.fill_between(trials, W.min(axis=0), W.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.axhline(100 * threshold, color="k", ls="--", lw=0.8)
    ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("trials per condition")
    ax.set_ylabel("worst condition's final distance (cm)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = ROOT / path
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")
