"""Time-varying linear-Gaussian controllers p(u_t | x_t) = N(K_t x_t + k_t, Σ_t) and their KL.

Shapes: K (T, dU, dX), k (T, dU), pol_covar (T, dU, dU).  ``chol_pol_covar[t]`` is the *lower*
Cholesky factor L_t with L_t L_tᵀ = Σ_t, so ``u = K x + k + L ε`` with ε ~ N(0, I) has covariance Σ_t.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.ndimage import gaussian_filter1d


def _sym(A: np.ndarray) -> np.ndarray:
    return 0.5 * (A + np.swapaxes(A, -1, -2))


@dataclass
class LinearGaussianController:
    """Linear-Gaussian controller; Cholesky factors and inverses are derived if not given."""

    K: np.ndarray
    k: np.ndarray
    pol_covar: np.ndarray
    chol_pol_covar: Optional[np.ndarray] = None
    inv_pol_covar: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.K = np.ascontiguousarray(self.K, dtype=np.float64)
        self.k = np.ascontiguousarray(self.k, dtype=np.float64)
        self.pol_covar = _sym(np.asarray(self.pol_covar, dtype=np.float64))
        T, dU, dX = self.K.shape
        if self.k.shape != (T, dU) or self.pol_covar.shape != (T, dU, dU):
            raise ValueError(f"controller shapes disagree: K {self.K.shape}, k {self.k.shape}, "
                             f"pol_covar {self.pol_covar.shape}")
        if self.chol_pol_covar is None:
            self.chol_pol_covar = np.linalg.cholesky(self.pol_covar)
        self.chol_pol_covar = np.ascontiguousarray(self.chol_pol_covar)
        if self.inv_pol_covar is None:
            eye = np.broadcast_to(np.eye(dU), self.pol_covar.shape)
            Linv = np.linalg.solve(self.chol_pol_covar, eye)
            self.inv_pol_covar = np.swapaxes(Linv, -1, -2) @ Linv
        self.inv_pol_covar = _sym(self.inv_pol_covar)

    @property
    def T(self) -> int:
        return self.K.shape[0]

    @property
    def dU(self) -> int:
        return self.K.shape[1]

    @property
    def dX(self) -> int:
        return self.K.shape[2]

    def act(self, t: int, x: np.ndarray, noise: Optional[np.ndarray] = None) -> np.ndarray:
        """Action at step ``t`` for state ``x`` (dX,); ``noise`` (dU,) standard normal or None."""
        u = self.K[t].dot(x)
        u += self.k[t]
        if noise is not None:
            u += self.chol_pol_covar[t].dot(noise)
        return u

    def mean_actions(self, X: np.ndarray) -> np.ndarray:
        """Mean actions for states X (N, T, dX) -> (N, T, dU)."""
        return np.einsum("tux,ntx->ntu", self.K, X) + self.k

    def log_prob(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """log p(u_t | x_t) for X (N, T, dX), U (N, T, dU) -> (N, T)."""
        d = U - self.mean_actions(X)
        Linv_d = np.linalg.solve(self.chol_pol_covar[None], d[..., None])[..., 0]
        logdet = 2 * np.log(np.diagonal(self.chol_pol_covar, axis1=-2, axis2=-1)).sum(-1)
        return -0.5 * (np.sum(Linv_d ** 2, axis=-1) + logdet + self.dU * np.log(2 * np.pi))

    def to_arrays(self) -> dict:
        return {"K": self.K, "k": self.k, "pol_covar": self.pol_covar}

    @classmethod
    def from_arrays(cls, d) -> "LinearGaussianController":
        return cls(np.asarray(d["K"]), np.asarray(d["k"]), np.asarray(d["pol_covar"]))

    def copy(self) -> "LinearGaussianController":
        return LinearGaussianController(self.K.copy(), self.k.copy(), self.pol_covar.copy(),
                                        self.chol_pol_covar.copy(), self.inv_pol_covar.copy())


def generate_noise(n: int, T: int, dU: int, rng: np.random.Generator, smooth: bool = False,
                   sigma: float = 1.0) -> np.ndarray:
    """Standard-normal action noise (n, T, dU), optionally smoothed along time.

    Smoothing convolves each channel with a Gaussian kernel of std ``sigma`` steps and rescales so
    that every channel keeps unit empirical variance (so the controller's Σ keeps its meaning)."""
    noise = rng.standard_normal((n, T, dU))
    if smooth and sigma > 0:
        noise = gaussian_filter1d(noise, sigma=sigma, axis=1, mode="nearest")
        std = noise.std(axis=1, keepdims=True)
        noise = noise / np.maximum(std, 1e-12)
    return noise


def traj_kl(mu: np.ndarray, sigma: np.ndarray, p: LinearGaussianController,
            q: LinearGaussianController) -> np.ndarray:
    """KL(p(τ) ‖ q(τ)) per time step for two controllers under the same dynamics.

    With shared dynamics the dynamics terms cancel and
    KL = Σ_t E_{x_t ~ N(μ_t, Σ_t)} KL(p(u_t|x_t) ‖ q(u_t|x_t)).
    ``mu`` (T, dX[+dU]) and ``sigma`` (T, dX[+dU], dX[+dU]) are p's state(-action) marginals; only the
    state block is used.  Returns (T,) — sum it for the trajectory KL.
    """
    dX, dU = p.dX, p.dU
    mu_x = mu[:, :dX]
    sig_x = sigma[:, :dX, :dX]
    Pq = q.inv_pol_covar
    dK = q.K - p.K                              # (T, dU, dX)
    dk = q.k - p.k                              # (T, dU)
    mean_diff = np.einsum("tux,tx->tu", dK, mu_x) + dk
    quad = np.einsum("tu,tuv,tv->t", mean_diff, Pq, mean_diff)
    trace_x = np.einsum("tuv,tvx,txy,tuy->t", Pq, dK, sig_x, dK, optimize=True)
    trace_u = np.einsum("tuv,tvu->t", Pq, p.pol_covar)
    logdet_p = 2 * np.log(np.diagonal(p.chol_pol_covar, axis1=-2, axis2=-1)).sum(-1)
    logdet_q = 2 * np.log(np.diagonal(q.chol_pol_covar, axis1=-2, axis2=-1)).sum(-1)
    kl = 0.5 * (trace_u + quad + trace_x - dU + logdet_q - logdet_p)
    return np.maximum(kl, 0.0)
