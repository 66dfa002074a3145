"""The newest-trials buffer shared by the dynamics priors (GMM and network)."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np


def check_trials(X, U) -> Tuple[np.ndarray, np.ndarray]:
    """X (N, T, dX) and U (N, T, dU) as finite float64 arrays, else ValueError."""
    X = np.asarray(X, dtype=np.float64)
    U = np.asarray(U, dtype=np.float64)
    if X.ndim != 3 or U.ndim != 3 or X.shape[:2] != U.shape[:2]:
        raise ValueError(f"X and U must be (N, T, dX) and (N, T, dU); got {X.shape}, {U.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(U))):
        raise ValueError("X and U must be finite")
    return X, U


class TrialBuffer:
    """The newest ``max_samples`` trials (per trial X (T, dX), U (T, dU)) of one (dX, dU)."""

    def __init__(self, max_samples: int):
        self.max_samples = int(max_samples)
        self._X: List[np.ndarray] = []
        self._U: List[np.ndarray] = []
        self.dX: Optional[int] = None
        self.dU: Optional[int] = None

    @property
    def n_trials(self) -> int:
        """Number of trials currently in the buffer."""
        return len(self._X)

    def add_trials(self, X, U) -> None:
        """Append trials X (N, T, dX), U (N, T, dU) to the buffer (oldest dropped beyond
        ``max_samples``) without refitting; call ``refit`` afterwards."""
        X, U = check_trials(X, U)
        if X.shape[1] < 2:
            raise ValueError("trials need T >= 2 to contain a transition")
        if self.dX is None:
            self.dX, self.dU = X.shape[2], U.shape[2]
        elif (X.shape[2], U.shape[2]) != (self.dX, self.dU):
            raise ValueError(f"trials have (dX, dU) = {(X.shape[2], U.shape[2])}, prior has "
                             f"{(self.dX, self.dU)}")
        self._X.extend(np.array(x) for x in X)
        self._U.extend(np.array(u) for u in U)
        del self._X[:-self.max_samples]
        del self._U[:-self.max_samples]
