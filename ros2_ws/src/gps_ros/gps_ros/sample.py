"""Trajectories: a batch of trials of one condition, with per-trial metadata.

Shapes: ``X`` (N, T, dX) states, ``U`` (N, T, dU) actions, ``obs[name]`` (N, T, ...) observations
(e.g. ``"image"``: (N, T, H, W, 3) uint8).  ``meta`` is a list of N :class:`TrialMeta`.
State ``X[:, t]`` is the state at which action ``U[:, t]`` was applied; ``X[:, t + 1]`` the result.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

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


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory, fsync and rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_savez(path: str | Path, **arrays) -> None:
    """np.savez_compressed, atomically."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
