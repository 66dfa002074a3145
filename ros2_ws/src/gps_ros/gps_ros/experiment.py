"""Experiment directories: config, per-iteration artefacts, metrics, plots, resumable state.

Layout of a run directory::

    gps_ros_experiment.json     marker (format version, seed, created); written last at creation
    config.yaml                 the validated config used
    environment.json            per session (start, each resume; written with its first commit):
                                code version, libraries, thread settings, CPU (gps_ros.provenance)
    metrics.jsonl               one JSON line per finished iteration
    progress.png                cost and final distance per iteration
    paths.png                   latest iteration: planned vs actual end-effector paths
    tb/                         TensorBoard event files (scalars per iteration; see gps_ros.tb)
    iterations/0001/            trials_c00.npz ..., controllers.npz, dynamics.npz, plan.npz
                                (the LQR's predicted state-action means), [trials.mcap]
    state.pkl                   algorithm state after the last complete iteration (the commit point)
    state.prev.pkl              the state of the iteration before it (the fallback)

Every file is written atomically (temp file + fsync + rename, :mod:`gps_ros.atomic`; TensorBoard
records are appended whole and fsynced).  ``state.pkl`` is written last in each iteration; the
commit renames the previous ``state.pkl`` to ``state.prev.pkl`` just before the new one is renamed
into place, so at every instant one of the two names holds a complete committed state.

On resume (:func:`gps_ros.train.resume`; :meth:`Experiment.load_state`) the committed state is
``state.pkl``; when that is missing or unreadable (truncated, corrupt gzip, not a pickle of a
state), or metrics.jsonl lacks a line of the iterations it holds while ``state.prev.pkl``'s are
all there, it is ``state.prev.pkl``, with a warning; neither readable is a one-line error and
nothing is touched.  A torn last line of metrics.jsonl (a write cut off) is dropped with a
warning and the file rewritten without it.  Metrics lines beyond the state's iteration are
dropped, leftover temp files of an interrupted write are removed, the iterations after the
state's are redone (their directories overwritten, their TensorBoard scalars purged), and the run
ends as an uninterrupted one would.  A directory without the marker but with the files of an
interrupted creation is reported as such, and ``train --config ... --out DIR`` takes it over.

``config.yaml``'s ``iterations`` is the run's target: ``train --iterations N`` records N there,
``--resume DIR`` runs to it, ``--resume DIR --iterations N`` changes it (with its first commit).
With ``logging.keep_images_iterations: N`` the trial files of iterations older than the last N
committed ones are rewritten without their camera frames (and their trials.mcap without images).
"""
from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import io
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .atomic import atomic_savez, atomic_write_bytes, is_temp_file, remove_temp_files
from .config import ConfigError, ExperimentConfig, dump_config, load_config
from .sample import Trajectories, drop_image_obs, dropped_obs, image_obs_keys

log = logging.getLogger(__name__)

MARKER = "gps_ros_experiment.json"
FORMAT_VERSION = 1
#: the only things an interrupted ``Experiment.create`` can have left behind
_CREATION_FILES = {"config.yaml", "iterations"}
STATE_KEYS = ("iteration", "trials", "conditions", "fitter")


def read_pickle(path: Path):
    """A pickle file, gzip-compressed (what :meth:`Experiment.save_state` writes) or plain (runs
    written before compression)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return pickle.loads(data)


class ExperimentError(RuntimeError):
    """A problem with an experiment directory, reported as one line."""


class Experiment:
    def __init__(self, root: Path, cfg: ExperimentConfig):
        self.root = Path(root)
        self.cfg = cfg
        #: whether the next commit keeps the state.pkl on disk as state.prev.pkl: not when
        #: :meth:`load_state` found it unusable and used state.prev.pkl instead
        self._keep_previous_state = True
        #: config.yaml is rewritten with the next commit (see :meth:`set_iterations`)
        self._config_changed = False

    # --- creation / opening ---------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, cfg: ExperimentConfig) -> "Experiment":
        root = Path(root)
        if (root / MARKER).exists():
            raise ExperimentError(f"{root} already holds an experiment; use --resume {root} "
                                  "or choose another --out")
        if root.exists() and not root.is_dir():
            raise ExperimentError(f"{root} exists and is not a directory")
        if root.exists() and any(root.iterdir()):
            if not _half_created(root):
                raise ExperimentError(f"{root} exists and is not empty; refusing to write into it")
            log.warning("%s: taking over an experiment directory whose creation was interrupted", root)
            remove_temp_files(root)
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
            if any(root.iterdir()) and _half_created(root):
                raise ExperimentError(f"{root}: experiment creation was interrupted (no {MARKER}); "
                                      f"start it again with --config CONFIG --out {root}")
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

    # --- provenance -------------------------------------------------------------------------
    @property
    def environment_path(self) -> Path:
        return self.root / "environment.json"

    def environments(self) -> List[dict]:
        """The recorded sessions (:mod:`gps_ros.provenance`), oldest first; [] for runs made
        before they were recorded or with an unreadable file."""
        try:
            data = json.loads(self.environment_path.read_text())
            return list(data["sessions"])
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def record_environment(self, from_iteration: int) -> dict:
        """Append this process's record (code version, libraries, threads, CPU) as the session
        that continues the run after ``from_iteration`` (0: its start) to ``environment.json``."""
        from .provenance import environment

        record = {"from_iteration": int(from_iteration), **environment()}
        sessions = self.environments() + [record]
        atomic_write_bytes(self.environment_path,
                           (json.dumps({"sessions": sessions}, indent=1) + "\n").encode())
        return record

    def remove_stale_temp_files(self) -> List[Path]:
        """Delete the temp files of atomic writes that a killed process left; return them."""
        return remove_temp_files(self.root)

    def set_iterations(self, iterations: int) -> None:
        """Make ``iterations`` the run's target, what a later ``--resume`` without
        ``--iterations`` runs to: config.yaml's ``iterations``, rewritten (atomically) with the
        next commit, so a resume that fails before committing an iteration changes nothing."""
        if iterations != self.cfg.iterations:
            self.cfg.iterations = iterations
            self._config_changed = True

    # --- state ----------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / "state.pkl"

    @property
    def prev_state_path(self) -> Path:
        return self.root / "state.prev.pkl"

    def save_state(self, state: dict) -> None:
        """Commit ``state``: ``state.pkl``, the pickle gzip-compressed (level 1, no timestamp, so
        equal states give equal bytes), written atomically; the previous ``state.pkl`` becomes
        ``state.prev.pkl`` just before the new one is renamed into place.  A vision run's state
        holds camera frames (replay buffer, pretraining pool): 238 MB raw, 41 MB compressed,
        ~1.2 s.  A changed target (:meth:`set_iterations`) is written to config.yaml first."""
        if self._config_changed:
            atomic_write_bytes(self.root / "config.yaml", dump_config(self.cfg).encode())
            self._config_changed = False
        atomic_write_bytes(self.state_path, gzip.compress(
            pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), compresslevel=1, mtime=0),
            keep_previous=self.prev_state_path if self._keep_previous_state else None)
        self._keep_previous_state = True

    def _read_state(self, path: Path) -> dict:
        try:
            state = read_pickle(path)
        except Exception as err:  # corrupt state is reported, never silently replaced
            msg = " ".join(str(err).split())
            raise ExperimentError(f"{path} is unreadable ({type(err).__name__}: {msg})") from None
        if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
            raise ExperimentError(f"{path} is not a gps_ros algorithm state (expected a dict with "
                                  f"{', '.join(STATE_KEYS)})")
        return state

    def load_state(self, check_metrics: bool = False) -> Optional[dict]:
        """The committed algorithm state, None before the first commit.

        ``state.pkl``; when that is missing (a commit killed between its two renames) or
        unreadable, ``state.prev.pkl``, the iteration before it, with a warning.  With
        ``check_metrics`` (a resume), a state whose iterations do not all have a metrics.jsonl
        row also yields to ``state.prev.pkl`` if that one's do (redoing the iteration rewrites
        the row).  Neither file readable: a one-line :class:`ExperimentError`."""
        rows = self._parse_metrics()[0] if check_metrics else None
        problems: List[str] = []
        incomplete = None
        for path in (self.state_path, self.prev_state_path):
            if not path.exists():
                if path == self.state_path and self.prev_state_path.exists():
                    problems.append(f"{path.name} is missing (a commit was interrupted)")
                continue
            try:
                state = self._read_state(path)
            except ExperimentError as err:
                problems.append(str(err))
                continue
            missing = [] if rows is None else _missing_rows(rows, state["iteration"])
            if missing:
                problems.append(f"{self.metrics_path.name} has no line for iteration(s) "
                                f"{', '.join(map(str, missing))} of {path.name}")
                incomplete = incomplete or (path, state)
                continue
            return self._use_state(path, state, problems)
        if incomplete is not None:
            return self._use_state(*incomplete, problems)
        if problems:
            unreadable = [p for p in problems if not p.endswith("(a commit was interrupted)")]
            what = "it" if len(unreadable) == 1 else "either"
            raise ExperimentError("; ".join(unreadable) + f"; the experiment cannot be resumed "
                                  f"from {what}")
        return None

    def _use_state(self, path: Path, state: dict, problems: List[str]) -> dict:
        self._keep_previous_state = path == self.state_path
        if problems:
            log.warning("%s: %s; using %s (iteration %s)", self.root, "; ".join(problems),
                        path.name, state["iteration"])
        return state

    def completed_iterations(self) -> List[int]:
        """Iterations committed by the state :meth:`load_state` returns (1 .. its iteration)."""
        state = self.load_state()
        return list(range(1, int(state["iteration"]) + 1)) if state is not None else []

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
        plan = {f"c{m:02d}/mu": np.asarray(r.mu) for m, r in enumerate(getattr(result, "lqr", None) or [])
                if getattr(r, "mu", None) is not None}
        if plan:
            atomic_savez(d / "plan.npz", **plan)
        if self.cfg.logging.mcap:
            self._write_mcap(d / "trials.mcap", result.samples, result.iteration,
                             controllers=controllers)

    def _write_mcap(self, path: Path, samples, iteration: int, controllers=None,
                    **metadata: str) -> Path:
        """Write an iteration's trials as ROS 2 messages, with the controllers the iteration
        computed from them (``controllers``, else its ``controllers.npz`` where it is there)."""
        from .record import write_trials_mcap
        from .robot.actuation import CONTROLLERS
        from .task import FROM_ROS, StateLayout, robot_description

        robot, n_points = self.cfg.agent.robot, len(self.cfg.agent.ee_points)
        names = robot.joints or (None if robot.urdf == FROM_ROS
                                 else list(robot_description(self.cfg.agent).joints))
        n = len(names) if names else (samples[0].X.shape[-1] - 6 * n_points) // 2
        layout = StateLayout.for_points(n_points, n)
        write_trials_mcap(path, samples, 1.0 / self.cfg.agent.control_rate_hz,
                          joint_pos=layout.joint_pos, joint_vel=layout.joint_vel,
                          joint_names=names, command_topic=f"/{CONTROLLERS[robot.command]}/commands",
                          metadata={"experiment": self.cfg.name, "iteration": str(iteration),
                                    **metadata},
                          controllers=(controllers if controllers is not None
                                       else self.load_controllers(iteration)))
        return path

    def load_controllers(self, it: int) -> Optional[list]:
        """The new controllers of iteration ``it`` (one per condition), None if not written."""
        path = self.root / "iterations" / f"{it:04d}" / "controllers.npz"
        return load_controllers(path) if path.exists() else None

    def trial_files(self, it: int) -> List[Path]:
        """The trial files of iteration ``it`` (one per condition; they need not exist)."""
        d = self.root / "iterations" / f"{it:04d}"
        return [d / f"trials_c{m:02d}.npz" for m in range(len(self.cfg.agent.conditions))]

    def drop_old_images(self, committed: int) -> List[int]:
        """Apply ``logging.keep_images_iterations`` (N): rewrite the trial files of the committed
        iterations before the last N without their camera frames (and their trials.mcap, if
        there is one, without images; a ROS run's frame files under ``trials/images/`` are
        removed); return the iterations changed.  Idempotent; a pass
        interrupted by a kill is finished by the next one (the MCAP file is rewritten first, so
        the trial files still have frames until it is done)."""
        keep = self.cfg.logging.keep_images_iterations
        if keep is None:
            return []
        changed = []
        for it in range(1, committed - keep + 1):
            try:
                images = {f: image_obs_keys(f) for f in self.trial_files(it) if f.exists()}
                if not any(images.values()):
                    continue
                mcap = self.root / "iterations" / f"{it:04d}" / "trials.mcap"
                if mcap.exists() and len(images) == len(self.cfg.agent.conditions):
                    trials = [Trajectories.load(f) for f in images]
                    for tr, keys in zip(trials, images.values()):
                        for k in keys:
                            tr.obs.pop(k)
                    self._write_mcap(mcap, trials, it)
                for f in images:
                    self._remove_sampler_frames(f)   # first: the trial file still has them
                    drop_image_obs(f)
            except Exception as err:       # housekeeping never stops a run
                log.warning("iteration %d: camera frames not dropped (%s: %s)", it,
                            type(err).__name__, err)
                continue
            changed.append(it)
        if changed:
            log.info("dropped the camera frames of iteration(s) %s (logging.keep_images_iterations"
                     " = %d)", ", ".join(map(str, changed)), keep)
        return changed

    def _remove_sampler_frames(self, trials_file: Path) -> None:
        """A ROS run's trials name the frame files their samplers wrote (``TrialMeta.image_paths``,
        under ``trials/images/``; the frames themselves are also in the trial file): remove
        those that lie inside this experiment directory."""
        with np.load(trials_file, allow_pickle=False) as z:
            metas = json.loads(str(z["meta"])) if "meta" in z.files else []
        root = self.root.resolve()
        for m in metas:
            for p in m.get("image_paths") or ():
                path = Path(p).resolve()
                if root in path.parents and path.is_file():
                    path.unlink()

    # --- metrics --------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    def _parse_metrics(self) -> Tuple[List[dict], Optional[str]]:
        """The rows of metrics.jsonl and its torn last line (None when it ends with a whole row);
        a bad line before the last is a one-line :class:`ExperimentError`."""
        if not self.metrics_path.exists():
            return [], None
        try:
            text = self.metrics_path.read_bytes().decode("utf-8", errors="replace")
        except OSError as err:
            raise ExperimentError(f"{self.metrics_path} is unreadable ({err.strerror})") from None
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        rows = []
        for k, (n, line) in enumerate(lines):
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("iteration"), int):
                rows.append(row)
            elif k == len(lines) - 1:
                return rows, line
            else:
                raise ExperimentError(f"{self.metrics_path}: line {n} is not a metrics row "
                                      f"({_preview(line)})")
        return rows, None

    def read_metrics(self) -> List[dict]:
        """The rows of metrics.jsonl; a torn last line is left out, with a warning."""
        rows, torn = self._parse_metrics()
        if torn is not None:
            log.warning("%s: ignoring a torn last line (%s)", self.metrics_path, _preview(torn))
        return rows

    def repair_metrics(self) -> List[dict]:
        """Rewrite metrics.jsonl, atomically, without a torn last line (the tail of a write cut
        off by a power loss), with a warning naming what was dropped; return the rows."""
        rows, torn = self._parse_metrics()
        if torn is not None:
            self.write_metrics(rows)
            log.warning("%s: dropped a torn last line (%d bytes: %s)", self.metrics_path,
                        len(torn.encode()), _preview(torn))
        return rows

    def write_metrics(self, rows: List[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.metrics_path, text.encode())

    # --- TensorBoard ------------------------------------------------------------------------------
    def scalar_writer(self, purge_step: Optional[int] = None):
        """A :class:`gps_ros.tb.ScalarWriter` on ``tb/``, or None when disabled or unavailable.

        ``purge_step`` (the first iteration this process will write) is used when the directory
        already has event files, so a redone iteration's earlier scalars are hidden."""
        if not self.cfg.logging.tensorboard:
            return None
        from . import tb

        if not tb.available():
            log.warning("tensorboardX is not installed; no TensorBoard scalars "
                        "(pip install tensorboardX, or set logging.tensorboard: false)")
            return None
        d = self.root / "tb"
        old = d.is_dir() and any(d.glob("events.out.tfevents.*"))
        return tb.ScalarWriter(d, purge_step=purge_step if old else None)

    def plot(self, rows: List[dict]) -> None:
        """progress.png: mean sample cost and final distance per condition, per iteration."""
        if not rows or not self.cfg.logging.plots:
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
        _save_png(fig, self.root / "progress.png", dpi=110)

    def plot_paths(self, iteration: int, samples, ee_start: int) -> None:
        """paths.png for ``iteration``: per condition, the end-effector paths of the trials (grey)
        against the path the LQR planned for the controller that ran them (the previous
        iteration's ``plan.npz``, dashed) and the plan for the next iteration (red).

        The EE origin relative to the target is state dims ``ee_start .. ee_start + 3``; the top
        row is the top view (x, y in cm, target at 0), the bottom row the distance over time."""
        if not self.cfg.logging.plots:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def load_plan(it):
            f = self.root / "iterations" / f"{it:04d}" / "plan.npz"
            if it < 1 or not f.exists():
                return {}
            with np.load(f) as z:
                return {k: z[k] for k in z.files}

        executed, nxt = load_plan(iteration - 1), load_plan(iteration)
        e = slice(ee_start, ee_start + 3)
        M = len(samples)
        fig, axes = plt.subplots(2, M, figsize=(3.0 * M, 5.6), squeeze=False)
        dt = 1.0 / self.cfg.agent.control_rate_hz
        for m, tr in enumerate(samples):
            top, bot = axes[0, m], axes[1, m]
            P = 100.0 * tr.X[:, :, e]                                     # (N, T, 3) cm
            t = np.arange(tr.T) * dt
            for i in range(tr.N):
                lbl = "trials" if i == 0 else None
                top.plot(P[i, :, 0], P[i, :, 1], color="0.55", lw=0.8, label=lbl)
                bot.plot(t, np.linalg.norm(P[i], axis=-1), color="0.55", lw=0.8, label=lbl)
            for plan, style, lbl in ((executed, dict(color="k", ls="--", lw=1.4), "plan they ran"),
                                     (nxt, dict(color="C3", lw=1.4), "next plan")):
                mu = plan.get(f"c{m:02d}/mu")
                if mu is None:
                    continue
                Q = 100.0 * mu[:, e]
                top.plot(Q[:, 0], Q[:, 1], label=lbl, **style)
                bot.plot(t[:len(Q)], np.linalg.norm(Q, axis=-1), label=lbl, **style)
            top.plot([0], [0], "*", color="C2", ms=10, label="target")
            top.plot(P[:, 0, 0].mean(), P[:, 0, 1].mean(), "o", color="k", ms=4, label="start")
            top.set_title(f"condition {m}", fontsize=9)
            top.set_xlabel("x - target (cm)", fontsize=8)
            top.set_ylabel("y - target (cm)", fontsize=8)
            top.set_aspect("equal", adjustable="datalim")
            top.grid(alpha=0.3)
            bot.axhline(2.0, color="k", lw=0.6, ls=":")
            bot.set_yscale("log")
            bot.set_xlabel("t (s)", fontsize=8)
            bot.set_ylabel("EE distance (cm)", fontsize=8)
            bot.grid(alpha=0.3, which="both")
            for a in (top, bot):
                a.tick_params(labelsize=7)
        axes[0, 0].legend(fontsize=6, loc="best")
        fig.suptitle(f"{self.cfg.name}: end-effector paths, iteration {iteration}", fontsize=10)
        fig.tight_layout()
        _save_png(fig, self.root / "paths.png", dpi=80)


def _save_png(fig, path: Path, dpi: int) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _half_created(root: Path) -> bool:
    """True if ``root`` holds nothing but what an interrupted :meth:`Experiment.create` leaves."""
    for p in root.iterdir():
        if is_temp_file(p.name) and p.is_file():
            continue
        if p.name not in _CREATION_FILES:
            return False
        if p.is_dir() and any(p.iterdir()):
            return False
    return True


def _missing_rows(rows: List[dict], iteration: int) -> List[int]:
    """Iterations 1 .. ``iteration`` that have no metrics row."""
    have = {r["iteration"] for r in rows}
    return [i for i in range(1, int(iteration) + 1) if i not in have]


def _preview(line: str, n: int = 60) -> str:
    return repr(line if len(line) <= n else line[:n] + "...")


def load_controllers(path: str | Path) -> list:
    """The per-condition controllers of an iteration's ``controllers.npz``."""
    from .control import LinearGaussianController

    with np.load(path) as d:
        M = len({k.split("/")[0] for k in d.files})
        return [LinearGaussianController(d[f"c{m:02d}/K"], d[f"c{m:02d}/k"],
                                         d[f"c{m:02d}/pol_covar"]) for m in range(M)]


def export_iteration(run_dir: str | Path, iteration: Optional[int] = None,
                     out: Optional[str | Path] = None) -> Path:
    """Export one iteration's trials of an experiment directory to MCAP (``gps-ros export-mcap``).

    ``iteration`` defaults to the last complete one (the run's committed state); ``out`` defaults
    to ``RUN/iterations/NNNN/trials.mcap``.  Raises :class:`ExperimentError` (one line) for a
    directory that is not an experiment or an iteration that is not there.  An iteration whose
    camera frames were dropped (``logging.keep_images_iterations``) exports without images.
    """
    exp = Experiment.open(run_dir)
    done = exp.completed_iterations()
    if iteration is None:
        if not done:
            raise ExperimentError(f"{run_dir} has no complete iteration to export yet")
        iteration = done[-1]
    d = exp.root / "iterations" / f"{iteration:04d}"
    files = exp.trial_files(iteration)
    if iteration not in done or not all(f.exists() for f in files):
        have = f"{done[0]}..{done[-1]}" if done else "none"
        raise ExperimentError(f"{run_dir}: iteration {iteration} is not a complete iteration "
                              f"(complete: {have})")
    try:
        trials = [Trajectories.load(f) for f in files]
        gone = sorted({k for f in files for k in dropped_obs(f)})
    except Exception as err:
        raise ExperimentError(f"{d}: trials unreadable ({err})") from None
    if gone:
        log.warning("%s: iteration %d has no %s any more (logging.keep_images_iterations); "
                    "exporting without them", run_dir, iteration, ", ".join(gone))
    out = Path(out) if out is not None else d / "trials.mcap"
    return exp._write_mcap(out, trials, iteration, seed=str(exp.cfg.seed))


# --- integrity check (used by the fault-injection harness and its test) --------------------------
def check_files(root: str | Path) -> List[str]:
    """Load every file of an experiment directory by its type; return one line per problem.

    npz: every array; jsonl / json: every line / the document; yaml; pkl; png: signature and size;
    TensorBoard event files: every record's CRCs and protobuf; mcap: every message.  Temp files of
    interrupted writes and unknown file types are problems too."""
    from . import tb

    root = Path(root)
    problems = []
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            p = Path(dirpath) / name
            rel = p.relative_to(root)
            try:
                if is_temp_file(name):
                    raise ValueError("temp file of an interrupted write")
                if name.endswith(".npz"):
                    with np.load(p, allow_pickle=False) as z:
                        for k in z.files:
                            z[k]
                elif name.endswith(".jsonl"):
                    for line in p.read_text().splitlines():
                        json.loads(line)
                elif name.endswith(".json"):
                    json.loads(p.read_text())
                elif name.endswith(".yaml"):
                    import yaml

                    yaml.safe_load(p.read_text())
                elif name.endswith(".pkl"):
                    read_pickle(p)
                elif name.endswith(".png"):
                    data = p.read_bytes()
                    if not data.startswith(b"\x89PNG\r\n\x1a\n") or not data.endswith(b"IEND\xaeB`\x82"):
                        raise ValueError("not a complete PNG")
                elif name.startswith("events.out.tfevents."):
                    tb.read_events(p)
                elif name.endswith(".mcap"):
                    from .record import read_trials_mcap

                    read_trials_mcap(p)
                else:
                    raise ValueError("unknown file type")
            except Exception as err:
                problems.append(f"{rel}: {type(err).__name__}: {err}")
    return problems


def file_hashes(root: str | Path) -> Dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (to show nothing was touched)."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
