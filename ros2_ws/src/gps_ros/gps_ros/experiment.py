"""Experiment directories: config, per-iteration artefacts, metrics, plots, resumable state.

Layout of a run directory::

    gps_ros_experiment.json     marker (format version, seed, created)
    config.yaml                 the validated config used
    metrics.jsonl               one JSON line per finished iteration
    progress.png                cost and final distance per iteration
    iterations/0001/            trials_c00.npz ..., controllers.npz, dynamics.npz
    state.pkl                   algorithm state after the last complete iteration (the commit point)

Every file is written atomically (temp file + fsync + rename).  ``state.pkl`` is written last; on
resume, metrics lines beyond the state's iteration are dropped and that iteration is redone.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import pickle
from pathlib import Path
from typing import List, Optional

import numpy as np

from .config import ConfigError, ExperimentConfig, dump_config, load_config
from .sample import atomic_savez, atomic_write_bytes

log = logging.getLogger(__name__)

MARKER = "gps_ros_experiment.json"
FORMAT_VERSION = 1


class ExperimentError(RuntimeError):
    """A problem with an experiment directory, reported as one line."""


class Experiment:
    def __init__(self, root: Path, cfg: ExperimentConfig):
        self.root = Path(root)
        self.cfg = cfg

    # --- creation / opening ---------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, cfg: ExperimentConfig) -> "Experiment":
        root = Path(root)
        if (root / MARKER).exists():
            raise ExperimentError(f"{root} already holds an experiment; use --resume {root} "
                                  "or choose another --out")
        if root.exists() and any(root.iterdir()):
            raise ExperimentError(f"{root} exists and is not empty; refusing to write into it")
        root.mkdir(parents=True, exist_ok=True)
        (root / "iterations").mkdir(exist_ok=True)
        atomic_write_bytes(root / "config.yaml", dump_config(cfg).encode())
        marker = {"format": FORMAT_VERSION, "seed": cfg.seed,
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        atomic_write_bytes(root / MARKER, json.dumps(marker).encode())
        return cls(root, cfg)

    @classmethod
    def open(cls, root: str | Path) -> "Experiment":
        root = Path(root)
        if not root.is_dir():
            raise ExperimentError(f"{root} is not a directory")
        if not (root / MARKER).exists():
            raise ExperimentError(f"{root} is not a gps_ros experiment (no {MARKER})")
        try:
            marker = json.loads((root / MARKER).read_text())
        except (OSError, ValueError) as err:
            raise ExperimentError(f"{root / MARKER} is unreadable: {err}") from None
        if marker.get("format") != FORMAT_VERSION:
            raise ExperimentError(f"{root}: experiment format {marker.get('format')} is not "
                                  f"supported (expected {FORMAT_VERSION})")
        try:
            cfg = load_config(root / "config.yaml")
        except ConfigError as err:
            raise ExperimentError(str(err)) from None
        return cls(root, cfg)

    # --- state ----------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / "state.pkl"

    def save_state(self, state: dict) -> None:
        atomic_write_bytes(self.state_path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

    def load_state(self) -> Optional[dict]:
        if not self.state_path.exists():
            return None
        try:
            with open(self.state_path, "rb") as f:
                return pickle.load(f)
        except Exception as err:  # corrupt state is reported, never silently replaced
            raise ExperimentError(f"{self.state_path} is unreadable ({err}); the experiment "
                                  "cannot be resumed from it") from None

    # --- per-iteration artefacts ------------------------------------------------------------
    def iteration_dir(self, it: int) -> Path:
        d = self.root / "iterations" / f"{it:04d}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_iteration(self, result, controllers) -> None:
        """Trials per condition, the new controllers and the fitted dynamics of one iteration."""
        d = self.iteration_dir(result.iteration)
        for m, tr in enumerate(result.samples):
            tr.save(d / f"trials_c{m:02d}.npz")
        arrays = {}
        for m, c in enumerate(controllers):
            for k, v in c.to_arrays().items():
                arrays[f"c{m:02d}/{k}"] = v
        atomic_savez(d / "controllers.npz", **arrays)
        dyn = {}
        for m, dy in enumerate(result.dynamics):
            for k, v in dy.to_arrays().items():
                dyn[f"c{m:02d}/{k}"] = v
        atomic_savez(d / "dynamics.npz", **dyn)

    # --- metrics --------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    def read_metrics(self) -> List[dict]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
        return rows

    def write_metrics(self, rows: List[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.metrics_path, text.encode())

    def plot(self, rows: List[dict]) -> None:
        """progress.png: mean sample cost and final distance per condition, per iteration."""
        if not rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        its = [r["iteration"] for r in rows]
        dist = np.array([r["final_distance"] for r in rows]) * 100.0
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        a.plot(its, [r["cost"] for r in rows], "o-")
        a.set_xlabel("iteration")
        a.set_ylabel("mean trial cost")
        a.set_yscale("symlog")
        a.grid(alpha=0.3)
        for m in range(dist.shape[1]):
            b.plot(its, dist[:, m], "o-", label=f"condition {m}")
        b.axhline(2.0, color="k", ls="--", lw=1, label="2 cm")
        b.set_xlabel("iteration")
        b.set_ylabel("final EE distance (cm)")
        b.set_yscale("log")
        b.grid(alpha=0.3, which="both")
        b.legend(fontsize=7)
        fig.suptitle(f"{self.cfg.name} (seed {self.cfg.seed})")
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(self.root / "progress.png", buf.getvalue())
