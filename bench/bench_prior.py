#!/usr/bin/env python3
"""Dynamics priors on few trials: held-out one-step prediction error vs number of trials.

    python bench/bench_prior.py [--trials 5 10 20] [--draws 3] [--data runs/bench_prior_data]
                                [--methods none gmm sklearn nn gp] [--threads 1]

Data: trials of the default reach task (Panda, T=100, dX=32, dU=7, 4 conditions), 10 per condition
and iteration, recorded once by ``gps-ros train`` (seed 7, 3 iterations) into ``--data`` and reused.
A problem is one iteration (2 or 3: controllers already moving the arm) and one random draw: the
prior and the per-condition fits see ``n`` training trials (round-robin over the conditions, from the
first 5 of each), and are scored on the last 5 trials of every condition (fresh trials of the same
controllers, never seen).

For every method the figure is the RMS of ``x_{t+1} - (F_t [x_t; u_t] + f_t)`` over all fresh
tuples, where (F_t, f_t) is the per-time-step Bayesian fit of that condition's training trials under
the prior -- exactly what the LQR then uses.  ``prior alone`` is the prior's own prediction of
``x_{t+1}`` from ``(x_t, u_t)`` (the GMM's mixture of linear experts; the network's output).

Methods: ``none`` (per-step regression, no prior), ``gmm-ml`` (dynamics.GMM with maximum-likelihood
covariances, ``cov_prior=0``: the prior before issue 12), ``gmm`` (dynamics.GMM with MAP covariances,
the shipped ``cov_prior``), ``sklearn`` (scikit-learn's GaussianMixture -- k-means++ initialisation,
``reg_covar``, maximum likelihood -- in the same prior, for comparison; needs scikit-learn),
``nn`` (the neural-network prior, dynamics.DynamicsPriorNN; needs torch), ``gp`` (the sparse
Gaussian-process prior, dynamics.DynamicsPriorGP; needs gpytorch).  ``--gmm-kwargs`` passes
extra GMM arguments as JSON to try variants.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path


def _parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--data", default="runs/bench_prior_data")
    ap.add_argument("--methods", nargs="+", default=["none", "gmm-ml", "gmm", "sklearn", "nn", "gp"])
    ap.add_argument("--gmm-kwargs", default="{}", help="JSON: extra GMM arguments (variants)")
    ap.add_argument("--prior-kwargs", default="{}", help="JSON: extra DynamicsPriorGMM arguments")
    ap.add_argument("--nn-kwargs", default="{}", help="JSON: extra DynamicsPriorNN arguments")
    ap.add_argument("--gp-kwargs", default="{}", help="JSON: extra DynamicsPriorGP arguments")
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


ARGS = _parse()
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = str(ARGS.threads)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("gps_ros") is None:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "ros2_ws" / "src" / "gps_ros"))
from gps_ros.dynamics import DynamicsPriorGMM, fit_linear_gaussian  # noqa: E402
from gps_ros.sample import Trajectories  # noqa: E402

CONFIG = ROOT / "ros2_ws/src/gps_ros/config/panda_reach.yaml"


def record(data: Path) -> None:
    """Record the trials: the reach task, 10 trials per condition, 3 iterations."""
    from gps_ros.config import load_config
    from gps_ros.train import train
    cfg = load_config(CONFIG)
    cfg.seed = 7
    cfg.algorithm.samples_per_condition = 10
    print(f"recording trials into {data} (reach task, seed 7, 3 iterations x 4 x 10 trials) ...",
          flush=True)
    train(cfg, data, iterations=3, progress=False)


def load(data: Path, iteration: int):
    """[(X (10, T, dX), U (10, T, dU)) per condition] of one iteration."""
    out = []
    for path in sorted((data / "iterations" / f"{iteration:04d}").glob("trials_c*.npz")):
        tr = Trajectories.load(path).valid()
        out.append((tr.X, tr.U))
    return out


def problems(data: Path, n_train: int, draws: int):
    """Yield (train [(X, U) per condition], test [(X, U) per condition])."""
    for iteration in (2, 3):
        conds = load(data, iteration)
        for draw in range(draws):
            rng = np.random.default_rng(1000 * iteration + 10 * n_train + draw)
            orders = [rng.permutation(5) for _ in conds]
            counts = [n_train // len(conds) + (c < n_train % len(conds)) for c in range(len(conds))]
            # a condition with no training trial is skipped (n < #conditions)
            train = [(X[o[:k]], U[o[:k]]) for (X, U), o, k in zip(conds, orders, counts)]
            test = [(X[5:], U[5:]) for X, U in conds]
            yield train, test


def rms_fit(dyn, X, U) -> float:
    """RMS one-step error of time-varying linear dynamics on trials X, U."""
    XU = np.concatenate([X[:, :-1], U[:, :-1]], axis=2)
    pred = np.einsum("tij,ntj->nti", dyn.Fm[:-1], XU) + dyn.fv[None, :-1]
    return float(np.sqrt(np.mean((X[:, 1:] - pred) ** 2)))


class SklearnGMMPrior(DynamicsPriorGMM):
    """DynamicsPriorGMM whose mixture is fitted by sklearn.mixture.GaussianMixture (on the same
    standardised data, k-means initialisation, reg_covar in standardised units, warm start)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from sklearn.mixture import GaussianMixture
        self._GaussianMixture = GaussianMixture
        self._sk = None

    def refit(self) -> None:
        data = self.transition_data()
        K = self.n_clusters(data.shape[0])
        g = self.gmm
        c, s = g._standardizer(data)
        Z = (data - c) / s
        sk = self._GaussianMixture(K, covariance_type="full", reg_covar=1e-6, tol=1e-3,
                                   max_iter=self.em_iterations, random_state=0)
        sk.fit(Z)
        g._c, g._s, g.N = c, s, data.shape[0]
        g._set_params(sk.means_, sk.covariances_, np.log(sk.weights_))
        g.mu = c + g._mu_s * s
        g.sigma = g._sig_s * np.outer(s, s)
        g.n_iterations = sk.n_iter_


def gmm_predict(gmm, Z, dZ):
    """The mixture's conditional mean of the last block given the first dZ dims (mixture of
    linear experts), for points Z (n, dZ) in data units."""
    mu, S = gmm.mu, gmm.sigma
    K = mu.shape[0]
    logp = np.empty((Z.shape[0], K))
    preds = []
    for k in range(K):
        Szz = S[k, :dZ, :dZ] + 1e-9 * np.trace(S[k, :dZ, :dZ]) / dZ * np.eye(dZ)
        L = np.linalg.cholesky(Szz)
        d = np.linalg.solve(L, (Z - mu[k, :dZ]).T)
        logp[:, k] = gmm.logmass[k] - 0.5 * np.sum(d * d, axis=0) - np.sum(np.log(np.diag(L)))
        W = np.linalg.solve(Szz, S[k, :dZ, dZ:])
        preds.append(mu[k, dZ:] + (Z - mu[k, :dZ]) @ W)
    logp -= logp.max(axis=1, keepdims=True)
    r = np.exp(logp)
    r /= r.sum(axis=1, keepdims=True)
    return np.einsum("nk,knd->nd", r, np.stack(preds))


def make_prior(method, gmm_kwargs, prior_kwargs):
    common = dict(max_clusters=20, min_samples_per_cluster=20, max_samples=20, strength=1.0, seed=0)
    common.update(prior_kwargs)
    if method == "gmm":
        return DynamicsPriorGMM(gmm_kwargs=gmm_kwargs, **common)
    if method == "gmm-ml":
        return DynamicsPriorGMM(gmm_kwargs={**gmm_kwargs, "cov_prior": 0.0}, **common)
    if method == "sklearn":
        return SklearnGMMPrior(**common)
    if method == "nn":
        from gps_ros.dynamics.nn_prior import DynamicsPriorNN
        return DynamicsPriorNN(seed=0, threads=ARGS.threads, **json.loads(ARGS.nn_kwargs))
    if method == "gp":
        from gps_ros.dynamics.gp_prior import DynamicsPriorGP
        return DynamicsPriorGP(seed=0, threads=ARGS.threads, **json.loads(ARGS.gp_kwargs))
    return None


def evaluate(method, train, test, gmm_kwargs, prior_kwargs):
    prior = make_prior(method, gmm_kwargs, prior_kwargs)
    t0 = time.perf_counter()
    if prior is not None:
        n = max(X.shape[0] for X, _ in train)
        for i in range(n):
            for X, U in train:
                if i < X.shape[0]:
                    prior.add_trials(X[i:i + 1], U[i:i + 1])
        prior.refit()
    fit_err, alone_err = [], []
    for (Xtr, Utr), (Xte, Ute) in zip(train, test):
        if Xtr.shape[0] == 0:
            continue
        dyn = fit_linear_gaussian(Xtr, Utr, prior=prior)
        fit_err.append(rms_fit(dyn, Xte, Ute) ** 2)
        if prior is not None:
            dX = Xte.shape[2]
            Z = np.concatenate([Xte[:, :-1], Ute[:, :-1]], axis=2).reshape(-1, dX + Ute.shape[2])
            Y = Xte[:, 1:].reshape(-1, dX)
            if method in ("nn", "gp"):
                pred = prior.predict(Z[:, :dX], Z[:, dX:])
            else:
                pred = gmm_predict(prior.gmm, Z, Z.shape[1])
            alone_err.append(float(np.mean((Y - pred) ** 2)))
    wall = time.perf_counter() - t0
    info = getattr(getattr(prior, "gmm", None), "n_iterations", None)
    return (float(np.sqrt(np.mean(fit_err))),
            float(np.sqrt(np.mean(alone_err))) if alone_err else float("nan"), wall, info)


def main():
    data = Path(ARGS.data)
    if not data.is_absolute():
        data = ROOT / data
    if not (data / "iterations" / "0003").is_dir():
        record(data)
    for method, module in (("sklearn", "sklearn"), ("nn", "torch"), ("gp", "gpytorch")):
        if method in ARGS.methods and importlib.util.find_spec(module) is None:
            print(f"skipping method {method!r}: {module} is not installed")
            ARGS.methods.remove(method)
    gmm_kwargs = json.loads(ARGS.gmm_kwargs)
    prior_kwargs = json.loads(ARGS.prior_kwargs)
    print(f"held-out one-step RMS error (fresh trials), mean over 2 iterations x {ARGS.draws} draws; "
          f"BLAS threads {ARGS.threads}")
    print(f"{'trials':>6} {'method':<10}{'fit w/ prior':>14}{'prior alone':>13}{'fit s':>8}{'EM it':>7}")
    for n in ARGS.trials:
        for method in ARGS.methods:
            rows = [evaluate(method, tr, te, gmm_kwargs, prior_kwargs)
                    for tr, te in problems(data, n, ARGS.draws)]
            fit = np.mean([r[0] for r in rows])
            alone = np.mean([r[1] for r in rows])
            wall = np.median([r[2] for r in rows])
            its = [r[3] for r in rows if r[3] is not None]
            it_s = f"{np.mean(its):.1f}" if its else "-"
            print(f"{n:>6} {method:<10}{fit:>14.3e}{alone:>13.3e}{wall:>8.2f}{it_s:>7}", flush=True)


if __name__ == "__main__":
    main()
