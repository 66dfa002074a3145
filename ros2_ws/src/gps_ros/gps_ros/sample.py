"""Trajectories: a batch of trials of one condition, with per-trial metadata.

Shapes: ``X`` (N, T, dX) states, ``U`` (N, T, dU) actions, ``obs[name]`` (N, T, ...) observations
(e.g. ``"image"``: (N, T, H, W, 3) uint8).  ``meta`` is a list of N :class:`TrialMeta`.
State ``X[:, t]`` is the state at which action ``U[:, t]`` was applied; ``X[:, t + 1]`` the result.

Trial files (``iterations/NNNN/trials_cNN.npz``): :meth:`Trajectories.save` / ``load``;
:func:`drop_image_obs` rewrites one without its camera frames (``logging.keep_images_iterations``).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .atomic import atomic_savez

log = logging.getLogger(__name__)


@dataclass
class TrialMeta:
    condition: int
    seed: Optional[int] = None
    discarded: bool = False
    reason: str = ""
    source: str = ""  # e.g. "controller", "policy"
    #: files holding the trial's camera frames when a ROS sampler wrote them to disk (see
    #: :func:`gps_ros.ros.convert.trial_from_msg`); the frames themselves are in ``obs``
    image_paths: tuple = ()

    def __post_init__(self) -> None:
        self.image_paths = tuple(str(p) for p in self.image_paths)


@dataclass
class Trajectories:
    X: np.ndarray
    U: np.ndarray
    meta: List[TrialMeta]
    obs: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        self.U = np.asarray(self.U, dtype=np.float64)
        if self.X.ndim != 3 or self.U.ndim != 3:
            raise ValueError(f"X and U must be (N, T, d); got {self.X.shape} and {self.U.shape}")
        if self.X.shape[:2] != self.U.shape[:2]:
            raise ValueError(f"X {self.X.shape} and U {self.U.shape} disagree on (N, T)")
        if len(self.meta) != self.X.shape[0]:
            raise ValueError(f"{len(self.meta)} metadata entries for {self.X.shape[0]} trials")
        for k, v in self.obs.items():
            if v.shape[:2] != self.X.shape[:2]:
                raise ValueError(f"obs[{k!r}] {v.shape} disagrees with X on (N, T)")

    # --- shape helpers -------------------------------------------------------------------
    @property
    def N(self) -> int:
        return self.X.shape[0]

    @property
    def T(self) -> int:
        return self.X.shape[1]

    @property
    def dX(self) -> int:
        return self.X.shape[2]

    @property
    def dU(self) -> int:
        return self.U.shape[2]

    def take(self, idx) -> "Trajectories":
        idx = np.asarray(idx, dtype=int)
        return Trajectories(self.X[idx], self.U[idx], [self.meta[i] for i in idx],
                            {k: v[idx] for k, v in self.obs.items()})

    @staticmethod
    def concatenate(parts: List["Trajectories"]) -> "Trajectories":
        parts = [p for p in parts if p.N > 0]
        if not parts:
            raise ValueError("nothing to concatenate")
        keys = set(parts[0].obs)
        return Trajectories(np.concatenate([p.X for p in parts]),
                            np.concatenate([p.U for p in parts]),
                            [m for p in parts for m in p.meta],
                            {k: np.concatenate([p.obs[k] for p in parts]) for k in keys})

    # --- validity --------------------------------------------------------------------------
    def mark_nonfinite(self) -> int:
        """Flag trials with NaN/inf in X or U as discarded (with a warning); return how many."""
        bad = ~(np.isfinite(self.X).all(axis=(1, 2)) & np.isfinite(self.U).all(axis=(1, 2)))
        count = 0
        for i in np.flatnonzero(bad):
            if not self.meta[i].discarded:
                self.meta[i].discarded = True
                self.meta[i].reason = "non-finite state or action"
                log.warning("trial %d of condition %d discarded: non-finite state or action",
                            i, self.meta[i].condition)
                count += 1
        return count

    @property
    def valid_mask(self) -> np.ndarray:
        return np.array([not m.discarded for m in self.meta], dtype=bool)

    def valid(self) -> "Trajectories":
        """The trials usable for fitting (not discarded, all finite)."""
        self.mark_nonfinite()
        return self.take(np.flatnonzero(self.valid_mask))

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically to ``path`` (.npz)."""
        arrays = {"X": self.X, "U": self.U,
                  "meta": np.array(json.dumps([asdict(m) for m in self.meta]))}
        for k, v in self.obs.items():
            arrays[f"obs/{k}"] = v
        atomic_savez(path, **arrays)

    @staticmethod
    def load(path: str | Path) -> "Trajectories":
        with np.load(path, allow_pickle=False) as z:
            meta = [TrialMeta(**m) for m in json.loads(str(z["meta"]))]
            obs = {k[4:]: z[k] for k in z.files if k.startswith("obs/")}
            return Trajectories(z["X"], z["U"], meta, obs)


def image_obs_keys(path: str | Path) -> List[str]:
    """The observations of a trials file (written by :meth:`Trajectories.save`) that are camera
    frames: arrays of 4 or more dimensions, ``(N, T, H, W[, C])``.  Read from the array headers,
    without decompressing the arrays."""
    import zipfile

    from numpy.lib import format as npy

    out = []
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not (name.startswith("obs/") and name.endswith(".npy")):
                continue
            with zf.open(name) as f:
                version = npy.read_magic(f)
                read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape = read(f)[0]
            if len(shape) >= 4:
                out.append(name[len("obs/"):-len(".npy")])
    return sorted(out)


def drop_image_obs(path: str | Path) -> List[str]:
    """Rewrite the trials file ``path`` atomically without its camera frames (see
    :func:`image_obs_keys`), keeping X, U, the metadata and any other observation; the names of
    the dropped observations are recorded in the file (``dropped_obs``, a JSON list).  Returns
    them; an empty list means there was nothing to drop and the file is untouched."""
    keys = image_obs_keys(path)
    if not keys:
        return []
    drop = {f"obs/{k}" for k in keys}
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    before = json.loads(str(arrays["dropped_obs"])) if "dropped_obs" in arrays else []
    arrays["dropped_obs"] = np.array(json.dumps(sorted(set(before) | set(keys))))
    atomic_savez(path, **arrays)
    return keys


def dropped_obs(path: str | Path) -> List[str]:
    """The observations :func:`drop_image_obs` removed from the trials file ``path``."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["dropped_obs"])) if "dropped_obs" in z.files else []
