"""Gaussian mixture model fitted by EM, used as a normal-inverse-Wishart prior generator.

Numerical design (robust for d ~ 70 dimensions and a few thousand points):

* EM runs on internally *standardised* data ``z = (x - c) / s`` (per-dimension centre ``c`` and
  scale ``s``; constant dimensions get a tiny floor scale).  Full-covariance EM is affine
  equivariant, so this only changes what the covariance regulariser means: ``reg * I`` is added
  in standardised units, i.e. ``reg * diag(s^2)`` in data units, which keeps the fit scale-free
  (data of size 1e6 or 1e-6 behave alike).  Parameters are stored and reported in data units.
* Log-densities use the Cholesky factors of the covariances, computed for all clusters by one
  large matrix product; responsibilities use log-sum-exp; the reported log-likelihood is the mean
  per-point log-density in *data* units.
* A cluster whose responsibility mass drops below ``min(1, n / (4K))`` points is re-seeded at the
  worst-explained point with the global covariance.
* Initialisation: k-means++ / Lloyd (or sequential chunks) hard labels, or the previous fit
  (warm start) when that is at least as likely on the new data.
* Optional MAP covariances (``cov_prior``): each cluster's covariance is shrunk toward the global
  covariance by that many pseudo-points -- what keeps a mixture of 71-dimensional clusters fitted
  on a few trials from collapsing (the dynamics prior uses 10).
* Convergence: EM stops when the mean per-point log-likelihood changes by less than
  ``tol * max(1, |ll|)``.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Tuple

import numpy as np
import scipy.linalg as sla
from scipy.special import logsumexp

log = logging.getLogger(__name__)

__all__ = ["GMM"]

_LOG_2PI = float(np.log(2.0 * np.pi))
# Responsibilities below this are ignored in the M-step (their contribution is < 1e-12 per point).
_RESP_EPS = 1e-12


def _chol_lower(S: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of (K, d, d) symmetric PD matrices, with a per-matrix jitter ladder
    when a factorisation fails (never raises for finite input)."""
    try:
        L = np.linalg.cholesky(S)
        if np.all(np.isfinite(L)):
            return L
    except np.linalg.LinAlgError:
        pass
    L = np.empty_like(S)
    d = S.shape[-1]
    eye = np.eye(d)
    for k in range(S.shape[0]):
        scale = max(float(np.mean(np.abs(np.diag(S[k])))), 1e-12)
        jitter = 0.0
        for attempt in range(20):
            try:
                L[k] = np.linalg.cholesky(S[k] + jitter * eye)
                break
            except np.linalg.LinAlgError:
                jitter = scale * 1e-10 * 10.0 ** attempt
        else:  # pathological; fall back to a diagonal factor
            L[k] = np.diag(np.sqrt(np.maximum(np.abs(np.diag(S[k])), 1.0)))
    return L


def _tri_inv_lower(L: np.ndarray) -> np.ndarray:
    """Inverses of (K, d, d) lower-triangular matrices by triangular solves."""
    eye = np.broadcast_to(np.eye(L.shape[-1]), L.shape)
    try:
        return sla.solve_triangular(L, eye, lower=True, check_finite=False)
    except ValueError:  # scipy without batch support
        return np.stack([sla.solve_triangular(L[k], eye[k], lower=True, check_finite=False)
                         for k in range(L.shape[0])])


class GMM:
    """Full-covariance Gaussian mixture fitted by EM.

    Args:
        init_sequential: initialise a cold fit by splitting the points (in their given order,
            e.g. time order) into K contiguous chunks; otherwise k-means++ seeding followed by a
            few Lloyd iterations (seeded by ``seed``).
        eigreg: eigenvalue regularisation: after each M-step the covariance eigenvalues
            (standardised units) are clipped to at least ``max(reg, 1e-6 * largest)``, capping the
            condition number at ~1e6; otherwise only ``reg * I`` is added.
        warmstart: when K and the dimension are unchanged, start EM from the previous fit if it
            explains the new data at least as well (mean log-likelihood) as a fresh
            initialisation does; otherwise start fresh (``warm_started`` records the choice).

        seed: random seed (initialisation and re-seeding).
        reg: covariance regulariser in standardised units (added to every covariance diagonal).
        kmeans_iterations: Lloyd iterations of the cold k-means initialisation.

        cov_prior: pseudo-points of an inverse-Wishart prior on every cluster covariance, centred
            on the global covariance G of the data: the M-step gives the MAP estimate
            ``(sum_i r_ik (z_i - mu_k)(z_i - mu_k)^T + cov_prior * G) / (N_k + cov_prior)``
            (standardised units; Fraley & Raftery 2007).  A cluster with few points falls back
            toward the global covariance instead of collapsing onto a low-dimensional subspace.
            0 (default here): maximum likelihood.

    Attributes after :meth:`update` (data units):
        mu: (K, d) means.  sigma: (K, d, d) covariances.  logmass: (K,) log mixture weights.
        loglik_history: mean per-point log-likelihood at every E-step of the last update.
        n_iterations: EM iterations of the last update.  converged: whether it met ``tol``.
        N: number of points of the last update.
    """

    def __init__(self, init_sequential: bool = False, eigreg: bool = False,
                 warmstart: bool = True, seed: int = 0, reg: float = 1e-6,
                 kmeans_iterations: int = 10, cov_prior: float = 0.0):
        self.init_sequential = bool(init_sequential)
        self.eigreg = bool(eigreg)
        self.warmstart = bool(warmstart)
        self.reg = float(reg)
        self.kmeans_iterations = int(kmeans_iterations)
        if not cov_prior >= 0:
            raise ValueError("cov_prior must be >= 0")
        self.cov_prior = float(cov_prior)
        self._gcov: Optional[np.ndarray] = None
        self._rng = np.random.default_rng(seed)
        self.mu: Optional[np.ndarray] = None
        self.sigma: Optional[np.ndarray] = None
        self.logmass: Optional[np.ndarray] = None
        self.loglik_history: List[float] = []
        self.n_iterations = 0
        self.converged = False
        self.N = 0
        self.n_reseeds = 0
        self.warm_started = False
        # standardised-space state
        self._c: Optional[np.ndarray] = None
        self._s: Optional[np.ndarray] = None
        self._mu_s: Optional[np.ndarray] = None
        self._sig_s: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ properties
    @property
    def fitted(self) -> bool:
        return self.mu is not None

    @property
    def K(self) -> int:
        return 0 if self.mu is None else self.mu.shape[0]

    @property
    def dim(self) -> int:
        return 0 if self.mu is None else self.mu.shape[1]

    # ------------------------------------------------------------------ internals
    def _standardizer(self, data: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        c = data.mean(axis=0)
        s = data.std(axis=0)
        smax = float(s.max())                    # (update refuses data without dimensions)
        if not np.isfinite(smax) or smax <= 0.0:
            return c, np.ones_like(s)
        return c, np.maximum(s, 1e-8 * smax)

    def _set_params(self, mu_s: np.ndarray, sig_s: np.ndarray, logmass: np.ndarray) -> None:
        """Install standardised parameters and cache the quantities the E-step needs."""
        K, d = mu_s.shape
        sig_s = 0.5 * (sig_s + np.swapaxes(sig_s, -1, -2))
        self._mu_s, self._sig_s = mu_s, sig_s
        self.logmass = logmass - logsumexp(logmass)
        L = _chol_lower(sig_s)
        Pm = _tri_inv_lower(L)  # (K, d, d), Pm_k = L_k^{-1}: maha = |Pm_k (z - mu_k)|^2
        self._W = np.ascontiguousarray(np.swapaxes(Pm, -1, -2).transpose(1, 0, 2).reshape(d, K * d))
        self._b = np.einsum("kij,kj->ki", Pm, mu_s).reshape(K * d)
        self._lognorm = -0.5 * (d * _LOG_2PI + 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1))

    def _log_obs(self, Z: np.ndarray) -> np.ndarray:
        """(n, K) log(weight_k) + log N(z | mu_k, Sigma_k) in standardised units, for Z (n, d)."""
        K = self._mu_s.shape[0]
        Y = Z @ self._W
        Y -= self._b
        Y = Y.reshape(Z.shape[0], K, -1)
        maha = np.einsum("nkd,nkd->nk", Y, Y)
        out = self.logmass + self._lognorm - 0.5 * maha
        bad = ~np.isfinite(out)
        if np.any(bad):
            out[bad] = -np.inf
        return out

    @staticmethod
    def _normalize(logobs: np.ndarray, logmass: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Responsibilities (n, K) and per-point log-likelihood (n,) from log joint (n, K).
        Points with no finite density anywhere get the mixture weights as responsibilities."""
        lse = logsumexp(logobs, axis=1)
        ok = np.isfinite(lse)
        resp = np.empty_like(logobs)
        resp[ok] = np.exp(logobs[ok] - lse[ok, None])
        resp[~ok] = np.exp(logmass)
        return resp, lse

    def _e_step(self, Z: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
        """Responsibilities (n, K), per-point log-likelihood (n,) and their mean (standardised
        units; -inf if no point has a finite density) under the current parameters."""
        resp, lse = self._normalize(self._log_obs(Z), self.logmass)
        fin = np.isfinite(lse)
        ll = float(np.mean(lse[fin])) if np.any(fin) else -np.inf
        return resp, lse, ll

    def _global_cov(self, Z: np.ndarray) -> np.ndarray:
        """Covariance of the (standardised: column means 0) points, + reg I."""
        n, d = Z.shape
        return Z.T @ Z / n + self.reg * np.eye(d)

    def _regularize(self, S: np.ndarray) -> np.ndarray:
        d = S.shape[-1]
        S = 0.5 * (S + np.swapaxes(S, -1, -2))
        if self.eigreg:
            w, V = np.linalg.eigh(S)
            floor = np.maximum(self.reg, 1e-6 * w[:, -1:])
            w = np.maximum(w, floor)
            S = (V * w[:, None, :]) @ np.swapaxes(V, -1, -2)
            return 0.5 * (S + np.swapaxes(S, -1, -2))
        S[:, np.arange(d), np.arange(d)] += self.reg
        return S

    def _m_step(self, Z: np.ndarray, resp: np.ndarray, lse: Optional[np.ndarray]) -> bool:
        """One M-step from responsibilities (n, K).  Returns True if a cluster was re-seeded."""
        n, d = Z.shape
        K = resp.shape[1]
        Nk = resp.sum(axis=0)
        min_mass = min(1.0, 0.25 * n / K)
        mu = np.empty((K, d))          # every cluster is fitted below or re-seeded
        sig = np.empty((K, d, d))
        empty = Nk < min_mass
        for k in np.flatnonzero(~empty):
            idx = np.flatnonzero(resp[:, k] > _RESP_EPS)
            r = resp[idx, k]
            Zk = Z[idx]
            mk = r @ Zk / Nk[k]
            Zc = Zk - mk
            mu[k] = mk
            if self.cov_prior > 0.0:
                # MAP under an inverse-Wishart prior centred on the global covariance
                sig[k] = ((Zc * r[:, None]).T @ Zc + self.cov_prior * self._gcov) / (Nk[k] + self.cov_prior)
            else:
                sig[k] = (Zc * r[:, None]).T @ Zc / Nk[k]
        if np.any(~empty):
            sig[~empty] = self._regularize(sig[~empty])
        reseeded = bool(np.any(empty))
        if reseeded:
            # worst-explained points first; lse None (initialisation): random distinct points
            order = np.argsort(lse) if lse is not None else self._rng.permutation(n)
            gcov = self._global_cov(Z)
            for j, k in enumerate(np.flatnonzero(empty)):
                mu[k] = Z[order[j % n]]
                sig[k] = gcov
                Nk[k] = min_mass
            self.n_reseeds += int(np.sum(empty))
        self._set_params(mu, sig, np.log(np.maximum(Nk, 1e-300)))
        return reseeded

    def _init_hard(self, Z: np.ndarray, K: int) -> None:
        """Cold initialisation: hard labels (sequential chunks or k-means++/Lloyd), then M-step."""
        n, d = Z.shape
        if self.init_sequential:
            labels = (np.arange(n) * K) // n
        else:
            labels = self._kmeans(Z, K)
        resp = np.zeros((n, K))
        resp[np.arange(n), labels] = 1.0
        self._m_step(Z, resp, None)

    def _kmeans(self, Z: np.ndarray, K: int) -> np.ndarray:
        n = Z.shape[0]
        rng = self._rng
        zz = np.einsum("ij,ij->i", Z, Z)
        centers = np.empty((K, Z.shape[1]))
        centers[0] = Z[rng.integers(n)]
        d2 = np.maximum(zz - 2.0 * Z @ centers[0] + centers[0] @ centers[0], 0.0)
        for k in range(1, K):
            tot = d2.sum()
            i = rng.choice(n, p=d2 / tot) if tot > 0 else rng.integers(n)
            centers[k] = Z[i]
            d2 = np.minimum(d2, np.maximum(zz - 2.0 * Z @ centers[k] + centers[k] @ centers[k], 0.0))
        labels = None
        for _ in range(max(self.kmeans_iterations, 1)):
            D2 = zz[:, None] - 2.0 * Z @ centers.T + np.einsum("ij,ij->i", centers, centers)[None]
            new = np.argmin(D2, axis=1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            counts = np.bincount(labels, minlength=K)
            sums = np.zeros_like(centers)
            np.add.at(sums, labels, Z)
            nz = counts > 0
            centers[nz] = sums[nz] / counts[nz, None]
        return labels

    # ------------------------------------------------------------------ public API
    def update(self, data: np.ndarray, K: int, max_iterations: int = 100, tol: float = 1e-5) -> None:
        """Fit the mixture to ``data`` by EM.

        Args:
            data: (n, d) finite points.
            K: number of clusters (clamped to [1, n]).
            max_iterations: maximum EM iterations.
            tol: relative tolerance on the mean per-point log-likelihood.

        Warm-starts from the previous fit when ``warmstart``, K and d are unchanged and the
        previous fit is at least as likely as the fresh initialisation (see the class docstring).
        """
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
            raise ValueError(f"data must be (n, d) with n, d >= 1; got {data.shape}")
        if not np.all(np.isfinite(data)):
            raise ValueError("GMM data must be finite")
        n, d = data.shape
        K = int(max(1, min(int(K), n)))
        c, s = self._standardizer(data)
        Z = (data - c) / s
        log_jac = float(np.sum(np.log(s)))
        self.n_reseeds = 0
        self._gcov = self._global_cov(Z) if self.cov_prior > 0.0 else None

        warm = None
        if self.warmstart and self.mu is not None and self.K == K and self.dim == d:
            self._set_params((self.mu - c) / s, self.sigma / np.outer(s, s), self.logmass.copy())
            warm = (self._mu_s, self._sig_s, self.logmass, self._e_step(Z))
        self._init_hard(Z, K)
        first = self._e_step(Z)
        self.warm_started = False
        if warm is not None and warm[3][2] >= first[2]:
            # the previous fit explains the new data at least as well as a fresh start: keep it
            self._set_params(*warm[:3])
            first = warm[3]
            self.warm_started = True

        self.loglik_history = []
        self.converged = False
        prev = None
        reseeded = False
        for it in range(max(int(max_iterations), 1)):
            resp, lse, ll_std = first if it == 0 else self._e_step(Z)
            ll = ll_std - log_jac
            self.loglik_history.append(ll)
            if prev is not None and not reseeded and np.isfinite(ll) and \
                    abs(ll - prev) <= tol * max(1.0, abs(ll)):
                self.converged = True
                break
            prev = ll
            reseeded = self._m_step(Z, resp, lse)
        self.n_iterations = it + 1
        self.N = n
        self._c, self._s = c, s
        self.mu = c + self._mu_s * s
        self.sigma = self._sig_s * np.outer(s, s)
        log.debug("GMM EM: K=%d n=%d d=%d iterations=%d converged=%s ll=%.4f reseeds=%d",
                  K, n, d, self.n_iterations, self.converged, self.loglik_history[-1], self.n_reseeds)

    def _check_fitted(self, pts: np.ndarray) -> None:
        if self.mu is None:
            raise RuntimeError("GMM has not been fitted; call update() first")
        if pts.shape[-1] != self.dim:
            raise ValueError(f"points have dimension {pts.shape[-1]}, GMM has {self.dim}")

    def log_likelihood(self, pts: np.ndarray) -> np.ndarray:
        """Per-point mixture log-density (data units) of pts (m, d) -> (m,)."""
        pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
        self._check_fitted(pts)
        lse = logsumexp(self._log_obs((pts - self._c) / self._s), axis=1)
        return lse - float(np.sum(np.log(self._s)))

    def responsibilities(self, pts: np.ndarray) -> np.ndarray:
        """Posterior cluster probabilities of pts (m, d) -> (m, K)."""
        pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
        self._check_fitted(pts)
        return self._normalize(self._log_obs((pts - self._c) / self._s), self.logmass)[0]

    def inference_batch(self, pts: np.ndarray):
        """NIW prior for each of B small datasets.

        Args:
            pts: (B, m, d) points (B datasets of m points).
        Returns:
            mu0 (B, d), Phi (B, d, d), m (B,), n0 (B,): the moment-matched Gaussian of the mixture
            re-weighted by the average responsibilities of each dataset's points:
            ``w = mean_i resp_i``, ``mu0 = sum_k w_k mu_k``,
            ``Phi = sum_k w_k (Sigma_k + (mu_k - mu0)(mu_k - mu0)^T)``; m = n0 = 1 (to be scaled
            by the caller).
        """
        pts = np.asarray(pts, dtype=np.float64)
        if pts.ndim != 3:
            raise ValueError(f"pts must be (B, m, d); got {pts.shape}")
        self._check_fitted(pts)
        B, m, d = pts.shape
        Z = (pts.reshape(B * m, d) - self._c) / self._s
        resp, _ = self._normalize(self._log_obs(Z), self.logmass)
        w = resp.reshape(B, m, -1).mean(axis=1)  # (B, K)
        w /= w.sum(axis=1, keepdims=True)
        mu0_s = w @ self._mu_s  # (B, d)
        K = self._mu_s.shape[0]
        Phi_s = (w @ self._sig_s.reshape(K, d * d)).reshape(B, d, d)
        Dm = (self._mu_s[None] - mu0_s[:, None, :]) * np.sqrt(w)[:, :, None]  # (B, K, d)
        Phi_s += np.swapaxes(Dm, -1, -2) @ Dm
        s = self._s
        mu0 = self._c + mu0_s * s
        Phi = Phi_s * np.outer(s, s)
        Phi = 0.5 * (Phi + np.swapaxes(Phi, -1, -2))
        ones = np.ones(B)
        return mu0, Phi, ones, ones.copy()

    def inference(self, pts: np.ndarray):
        """NIW prior for one small dataset pts (m, d) -> (mu0 (d,), Phi (d, d), m=1.0, n0=1.0);
        see :meth:`inference_batch`."""
        pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
        mu0, Phi, m, n0 = self.inference_batch(pts[None])
        return mu0[0], Phi[0], float(m[0]), float(n0[0])
