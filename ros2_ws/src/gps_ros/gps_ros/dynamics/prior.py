"""GMM dynamics prior shared across conditions, and the per-condition dynamics fitter.

The prior is a Gaussian mixture over transition tuples ``[x_t, u_t, x_{t+1}]`` (dimension
2dX+dU) collected from the most recent trials of *all* conditions (Levine & Abbeel 2014, sec. 3.1).
For the fit at one time step, the mixture is re-weighted by the responsibilities of that step's
N tuples and moment-matched into a normal-inverse-Wishart prior ``(mu0, Phi, m, n0)``.

Strength convention.  The GMM returns ``m = n0 = 1`` and ``Phi`` equal to the moment-matched
mixture *covariance*; :meth:`DynamicsPriorGMM.eval` multiplies ``m`` and ``n0`` by ``strength`` and
``Phi`` by the scaled ``n0``, so ``Phi / n0`` is exactly the mixture covariance and the prior counts
as ``strength`` pseudo-observations in ``sigma = (Phi + N S + ...) / (N + n0)``.

This is *not* what the original GPS code does: there ``m = 1`` and ``n0 = (N_gmm - 2 - D) / N_gmm``
(both times ``strength``), N_gmm being the number of tuples the mixture was fitted on and D the tuple
dimension, and ``Phi = m * covariance``.  Its prior covariance ``Phi / n0`` is therefore the mixture
covariance inflated by ``N_gmm / (N_gmm - 2 - D)`` (1.17 for 495 tuples of dimension 71), and
``n0`` turns negative -- an invalid prior -- when the mixture has been fitted on fewer than D + 2
tuples (the first iteration of a high-dimensional robot).  We keep ``m = n0 = strength`` so that the
prior is always valid, its covariance is the mixture's, and ``strength`` has one meaning (the same as
for the network prior, :mod:`.nn_prior`): how many trials the prior is worth.

Each cluster's covariance is a MAP estimate (``cov_prior`` pseudo-points toward the global
covariance, see :class:`~gps_ros.dynamics.gmm.GMM`): on few trials (495 tuples of dimension 71 over
up to 20 clusters, i.e. ~25 points per 71-dimensional cluster) the maximum-likelihood covariances
collapse onto their points and the prior predicts fresh trials 1.9x worse (``bench/bench_prior.py``).
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .buffer import TrialBuffer
from .buffer import check_trials as _check_trials
from .gmm import GMM
from .linear_gaussian import LinearGaussianDynamics, fit_linear_gaussian

log = logging.getLogger(__name__)

__all__ = ["DynamicsPriorGMM", "DynamicsFitter", "COV_PRIOR"]

# Default MAP pseudo-points of the dynamics prior's cluster covariances (bench/bench_prior.py: on the
# reach task's trials, 10 gives the lowest held-out error at 5 trials; 3-20 are within 5 %)
COV_PRIOR = 10.0



class DynamicsPriorGMM(TrialBuffer):
    """GMM prior over ``(x_t, u_t, x_{t+1})`` from a buffer of the newest trials.

    Args:
        max_clusters: upper bound on the number of mixture components.
        min_samples_per_cluster: K = max(2, min(max_clusters, floor(#tuples / this))).
        max_samples: number of (newest) trials kept in the buffer.
        strength: prior pseudo-count multiplier (see module docstring).
        em_iterations: maximum EM iterations per refit.
        seed: seed of the GMM.
        tol: EM convergence tolerance (relative change of the mean log-likelihood).

        gmm_kwargs: keyword arguments for :class:`GMM` (cov_prior, init_sequential, eigreg, ...);
            ``cov_prior`` defaults to :data:`COV_PRIOR`.
    """

    def __init__(self, max_clusters: int = 20, min_samples_per_cluster: int = 20,
                 max_samples: int = 20, strength: float = 1.0, em_iterations: int = 100,
                 seed: int = 0, tol: float = 1e-5, gmm_kwargs: Optional[dict] = None):
        if max_clusters < 1 or min_samples_per_cluster < 1 or max_samples < 1:
            raise ValueError("max_clusters, min_samples_per_cluster and max_samples must be >= 1")
        if not strength > 0:
            raise ValueError("strength must be > 0")
        self.max_clusters = int(max_clusters)
        self.min_samples_per_cluster = int(min_samples_per_cluster)
        super().__init__(max_samples)
        self.strength = float(strength)
        self.em_iterations = int(em_iterations)
        self.tol = float(tol)
        self.gmm = GMM(seed=seed, **{"cov_prior": COV_PRIOR, **(gmm_kwargs or {})})

    @property
    def fitted(self) -> bool:
        return self.gmm.fitted

    def transition_data(self) -> np.ndarray:
        """All buffered tuples ``[x_t, u_t, x_{t+1}]`` as (sum_i (T_i - 1), 2dX+dU)."""
        if not self._X:
            raise RuntimeError("the prior's buffer is empty")
        return np.concatenate([np.concatenate([x[:-1], u[:-1], x[1:]], axis=1)
                               for x, u in zip(self._X, self._U)], axis=0)

    def n_clusters(self, n_points: int) -> int:
        """K = max(2, min(max_clusters, floor(n_points / min_samples_per_cluster)))."""
        return int(max(2, min(self.max_clusters, n_points // self.min_samples_per_cluster)))

    def refit(self) -> None:
        """Refit the GMM (EM, warm-started when K is unchanged) to the buffered tuples."""
        data = self.transition_data()
        K = self.n_clusters(data.shape[0])
        self.gmm.update(data, K, max_iterations=self.em_iterations, tol=self.tol)

    def update(self, X, U) -> None:
        """Append trials X (N, T, dX), U (N, T, dU), keep the newest ``max_samples`` trials and
        refit the GMM."""
        self.add_trials(X, U)
        self.refit()

    def _check_eval(self, dX: int, dU: int, D: int) -> None:
        if not self.gmm.fitted:
            raise RuntimeError("DynamicsPriorGMM has no data; call update() first")
        if D != 2 * dX + dU or (self.dX, self.dU) != (dX, dU):
            raise ValueError(f"points of dimension {D} for dX={dX}, dU={dU}; prior was fitted "
                             f"with dX={self.dX}, dU={self.dU}")

    def eval(self, dX: int, dU: int, pts: np.ndarray):
        """NIW prior for one time step's tuples.

        Args:
            dX, dU: state and action dimensions.
            pts: (N, 2dX+dU) tuples ``[x_t, u_t, x_{t+1}]``.
        Returns:
            mu0 (D,), Phi (D, D), m (float), n0 (float) with m = n0 = strength and
            Phi = strength * (mixture covariance).
        """
        pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
        self._check_eval(dX, dU, pts.shape[1])
        mu0, Phi, m, n0 = self.gmm.inference(pts)
        m, n0 = m * self.strength, n0 * self.strength
        return mu0, Phi * n0, m, n0

    def eval_batch(self, dX: int, dU: int, P: np.ndarray):
        """Vectorised :meth:`eval` over time steps.

        Args:
            P: (B, N, 2dX+dU) tuples of B time steps.
        Returns:
            mu0 (B, D), Phi (B, D, D), m (B,), n0 (B,).
        """
        P = np.asarray(P, dtype=np.float64)
        self._check_eval(dX, dU, P.shape[-1])
        mu0, Phi, m, n0 = self.gmm.inference_batch(P)
        m, n0 = m * self.strength, n0 * self.strength
        return mu0, Phi * n0[:, None, None], m, n0

    def initial_state(self) -> Tuple[np.ndarray, np.ndarray]:
        """Mean (dX,) and covariance (dX, dX) (+1e-6 I) of the buffered trials' initial states.

        Note the buffer mixes conditions, so this is a broad prior over start states; the
        dynamics fit does not use it (each condition's x0 statistics come from its own trials).
        """
        if not self._X:
            raise RuntimeError("the prior's buffer is empty")
        x0 = np.stack([x[0] for x in self._X])
        mu0 = x0.mean(axis=0)
        d0 = x0 - mu0
        Phi = d0.T @ d0 / x0.shape[0] + 1e-6 * np.eye(x0.shape[1])
        return mu0, 0.5 * (Phi + Phi.T)


class PolicyPriorGMM(DynamicsPriorGMM):
    """GMM prior over state-action pairs ``(x_t, u_t)`` of the global policy (MDGPS / BADMM policy
    linearisation): the same buffer, EM and NIW inference as :class:`DynamicsPriorGMM`, on points of
    dimension dX + dU (``u_t`` being the policy's mean action at the sampled ``x_t``)."""

    def transition_data(self) -> np.ndarray:
        """All buffered pairs ``[x_t, u_t]`` as (sum_i T_i, dX+dU)."""
        if not self._X:
            raise RuntimeError("the prior's buffer is empty")
        return np.concatenate([np.concatenate([x, u], axis=1) for x, u in zip(self._X, self._U)])

    def _check_eval(self, dX: int, dU: int, D: int) -> None:
        if not self.gmm.fitted:
            raise RuntimeError("PolicyPriorGMM has no data; call update() first")
        if D != dX + dU or (self.dX, self.dU) != (dX, dU):
            raise ValueError(f"points of dimension {D} for dX={dX}, dU={dU}; prior was fitted "
                             f"with dX={self.dX}, dU={self.dU}")


def gmm_prior_kwargs(cfg, seed: int = 0) -> dict:
    """Keyword arguments of :class:`DynamicsPriorGMM` from a ``DynamicsConfig``'s ``prior``."""
    p = cfg.prior
    return dict(max_clusters=p.max_clusters, min_samples_per_cluster=p.min_samples_per_cluster,
                max_samples=p.max_samples, strength=p.strength, em_iterations=p.em_iterations,
                seed=seed, gmm_kwargs=dict(cov_prior=p.cov_prior))


def nn_prior_kwargs(cfg, seed: int = 0) -> dict:
    """Keyword arguments of :class:`~gps_ros.dynamics.nn_prior.DynamicsPriorNN` from a
    ``DynamicsConfig``'s ``nn``."""
    n = cfg.nn
    return dict(hidden=n.hidden, max_samples=n.max_samples, strength=n.strength, steps=n.steps,
                first_steps=n.first_steps, batch_size=n.batch_size, lr=n.lr,
                weight_decay=n.weight_decay, zz_floor=n.zz_floor, threads=n.threads, seed=seed)


def gp_prior_kwargs(cfg, seed: int = 0) -> dict:
    """Keyword arguments of :class:`~gps_ros.dynamics.gp_prior.DynamicsPriorGP` from a
    ``DynamicsConfig``'s ``gp``."""
    g = cfg.gp
    return dict(inducing=g.inducing, max_samples=g.max_samples, strength=g.strength,
                steps=g.steps, first_steps=g.first_steps, batch_size=g.batch_size, lr=g.lr,
                zz_floor=g.zz_floor, threads=g.threads, seed=seed)


class DynamicsFitter:
    """Fits one LinearGaussianDynamics per condition, sharing one prior across conditions.

    Args:
        use_prior: use a :class:`DynamicsPriorGMM` (otherwise plain per-step regression).
        regularization: xu-block diagonal regularisation of the per-step fit.
        prior_kwargs: keyword arguments of :class:`DynamicsPriorGMM`.
        x0_regularization: diagonal added to each condition's x0sigma.
    """

    def __init__(self, use_prior: bool = True, regularization: float = 1e-6,
                 prior_kwargs: Optional[dict] = None, x0_regularization: float = 1e-6,
                 prior=None):
        self.use_prior = bool(use_prior) or prior is not None
        self.regularization = float(regularization)
        self.x0_regularization = float(x0_regularization)
        if prior is not None:
            self.prior = prior
        else:
            self.prior = DynamicsPriorGMM(**(prior_kwargs or {})) if self.use_prior else None

    @classmethod
    def from_config(cls, cfg, seed: int = 0) -> "DynamicsFitter":
        """Build from a ``DynamicsConfig`` (``type`` gmm_prior | nn_prior | gp_prior |
        linear_regression, ``regularization``, ``prior`` (GMM), ``nn`` (network prior), ``gp``
        (Gaussian-process prior)).  ``model_prior`` also needs
        the robot's model: :func:`gps_ros.train.build_fitter` builds that fitter."""
        if cfg.type == "nn_prior":
            from .nn_prior import DynamicsPriorNN
            return cls(regularization=cfg.regularization,
                       prior=DynamicsPriorNN(**nn_prior_kwargs(cfg, seed)))
        if cfg.type == "gp_prior":
            from .gp_prior import DynamicsPriorGP
            return cls(regularization=cfg.regularization,
                       prior=DynamicsPriorGP(**gp_prior_kwargs(cfg, seed)))
        if cfg.type == "model_prior":
            raise ValueError("dynamics.type model_prior needs the robot model: build the fitter "
                             "with gps_ros.train.build_fitter(cfg, task)")
        return cls(use_prior=(cfg.type == "gmm_prior"), regularization=cfg.regularization,
                   prior_kwargs=gmm_prior_kwargs(cfg, seed))

    def fit(self, trajs: Sequence) -> List[LinearGaussianDynamics]:
        """Fit each condition's dynamics.

        Args:
            trajs: one object per condition with ``X`` (N_c, T, dX) and ``U`` (N_c, T, dU)
                (bad trials already removed; N_c >= 1).
        Returns:
            list of :class:`LinearGaussianDynamics`, one per condition.

        With the prior, all conditions' trials are first added to the prior buffer in
        round-robin order over conditions (so truncation to ``max_samples`` keeps a balanced,
        newest set) and the GMM is refitted once.
        """
        data = []
        for c, tr in enumerate(trajs):
            X, U = _check_trials(tr.X, tr.U)
            if X.shape[0] < 1:
                raise ValueError(f"condition {c} has no trials to fit dynamics to")
            data.append((X, U))
        if not data:
            return []
        if self.prior is not None:
            for i in range(max(X.shape[0] for X, _ in data)):
                for X, U in data:
                    if i < X.shape[0]:
                        self.prior.add_trials(X[i:i + 1], U[i:i + 1])
            self.prior.refit()
        return [fit_linear_gaussian(X, U, prior=self.prior, regularization=self.regularization,
                                    x0_regularization=self.x0_regularization) for X, U in data]
