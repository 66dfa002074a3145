#!/usr/bin/env python3
"""Benchmark of gps_ros.dynamics: per-condition fit with/without the GMM prior and prior EM.

Usage:  python bench/bench_dynamics.py [--quick] [--threads N] [--repeats R] [--reference GPS_CHECKOUT]

The first rows time the plain per-step fit without a prior (issue 12: the GPS reference
implementation needs ~8 ms for the N=5 case).

Problem size (GPS defaults for a 7-DoF arm): N=5 trials per condition, T=100, dX=32, dU=7; the
prior buffer holds 20 trials (4 conditions x 5) = 1980 tuples of dimension 71, K=20 clusters.
``--reference`` also times the published GPS implementation (a checkout of
https://github.com/cbfinn/gps; not a dependency, not vendored) on the same data: its ``DynamicsLR.fit``
(no prior) and ``DynamicsPriorGMM.update`` + ``DynamicsLRPrior.fit`` (K=20 as ours), and prints
how far its one-step predictions on the data are from ours.

Data come from a mildly nonlinear, stable random system driven by noisy linear feedback, so the
mixture has real structure.  Times are medians over repeats, BLAS limited to ``--threads`` (1 by
default, i.e. one core).
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--reference", metavar="GPS_CHECKOUT",
                    help="a checkout of github.com/cbfinn/gps: time its fits on the same data")
    args = ap.parse_args()
    if args.reference and not os.path.isdir(os.path.join(args.reference, "python", "gps")):
        ap.error(f"--reference {args.reference}: not a checkout of github.com/cbfinn/gps "
                 "(no python/gps in it)")
    return args


ARGS = _parse()
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = str(ARGS.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402

try:
    import gps_ros.dynamics as dyn  # noqa: E402
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ros2_ws",
                                    "src", "gps_ros"))
    import gps_ros.dynamics as dyn  # noqa: E402


def make_system(dX, dU, seed):
    rng = np.random.default_rng(seed)
    A = np.eye(dX) + 0.05 * rng.standard_normal((dX, dX)) / np.sqrt(dX)
    A *= 0.98 / max(1.0, np.max(np.abs(np.linalg.eigvals(A))))
    B = 0.1 * rng.standard_normal((dX, dU))
    C = rng.standard_normal((dX, dX)) / np.sqrt(dX)
    return A, B, C


def rollouts(system, n, T, x0, seed, noise=0.01):
    """n trials (n, T, dX), (n, T, dU) from one start state with noisy linear feedback."""
    A, B, C = system
    dX, dU = B.shape
    rng = np.random.default_rng(seed)
    Kfb = -0.2 * rng.standard_normal((dU, dX)) / np.sqrt(dX)
    X = np.zeros((n, T, dX))
    U = np.zeros((n, T, dU))
    X[:, 0] = x0 + 0.01 * rng.standard_normal((n, dX))
    for t in range(T):
        U[:, t] = X[:, t] @ Kfb.T + 0.5 * rng.standard_normal((n, dU))
        if t + 1 < T:
            X[:, t + 1] = (X[:, t] @ A.T + U[:, t] @ B.T + 0.1 * np.tanh(X[:, t] @ C.T)
                           + noise * rng.standard_normal((n, dX)))
    return X, U


class _Traj:
    def __init__(self, X, U):
        self.X, self.U = X, U


def timeit(fn, repeats, setup=None):
    out = []
    res = None
    for _ in range(repeats):
        state = setup() if setup is not None else None
        t0 = time.perf_counter()
        res = fn(state) if setup is not None else fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out)), float(np.min(out)), res


def reference_rows(X, U, allX, allU, ours, repeats):
    """The same fits by cbfinn/gps (imported from ARGS.reference)."""
    sys.path.insert(0, os.path.join(ARGS.reference, "python"))
    from gps.algorithm.dynamics.dynamics_lr import DynamicsLR
    from gps.algorithm.dynamics.dynamics_lr_prior import DynamicsLRPrior
    from gps.algorithm.dynamics.dynamics_prior_gmm import DynamicsPriorGMM

    rows = []
    lr = DynamicsLR({"regularization": 1e-6})
    med, mn, (Fm, fv, _) = timeit(lambda: lr.fit(X, U), repeats)
    # N=5 < dX+dU: Fm is not identified by the data, and the reference adds its regularization to
    # every entry of the xu block (sigma[it, it] += reg), not to its diagonal as a ridge; so
    # compare the fits where the data pin them down: their one-step predictions on the data
    xu = np.concatenate([X[:, :-1], U[:, :-1]], axis=-1)
    pred = [np.einsum("tij,ntj->nti", F[:-1], xu) + f[:-1] for F, f in ((Fm, fv), (ours.Fm, ours.fv))]
    err = np.abs(pred[0] - pred[1]).max()
    rows.append(("  reference DynamicsLR.fit (N=5)", med, mn,
                 f"predictions on the data: max |ref - ours| {err:.1e}"))
    hp = {"regularization": 1e-6, "prior": {"type": DynamicsPriorGMM, "max_clusters": 20,
                                            "min_samples_per_cluster": 20, "max_samples": 20,
                                            "strength": 1.0}}

    def prior_and_fit():
        d = DynamicsLRPrior(hp)
        d.prior.update(allX, allU)
        return d.fit(X, U)

    med, mn, _ = timeit(prior_and_fit, repeats)
    rows.append(("  reference prior update + fit (N=5)", med, mn, "cold EM, 20 trials, K=20"))
    return rows


def main():
    repeats = ARGS.repeats or (3 if ARGS.quick else 10)
    N, T, dX, dU, n_cond = 5, 100, 32, 7, 4
    system = make_system(dX, dU, 0)
    rng = np.random.default_rng(1)
    x0s = [rng.standard_normal(dX) for _ in range(n_cond)]
    conds = [rollouts(system, N, T, x0s[c], seed=10 + c) for c in range(n_cond)]
    conds2 = [rollouts(system, N, T, x0s[c] + 0.1, seed=100 + c) for c in range(n_cond)]
    allX = np.concatenate([c[0] for c in conds])
    allU = np.concatenate([c[1] for c in conds])
    allX2 = np.concatenate([c[0] for c in conds2])
    allU2 = np.concatenate([c[1] for c in conds2])
    X, U = conds[0]

    rows = []
    med, mn, ours = timeit(lambda: dyn.fit_linear_gaussian(X, U), repeats)
    rows.append(("fit, no prior (N=5)", med, mn, "issue 12: GPS reference impl. ~8 ms"))
    if ARGS.reference:
        rows += reference_rows(X, U, allX, allU, ours, repeats)
    X50, U50 = rollouts(system, 50, T, x0s[0], seed=10)
    med, mn, _ = timeit(lambda: dyn.fit_linear_gaussian(X50, U50), repeats)
    rows.append(("fit, no prior (N=50)", med, mn, "N > dX+dU"))

    def cold():
        p = dyn.DynamicsPriorGMM()
        p.update(allX, allU)
        return p

    med, mn, prior = timeit(cold, repeats)
    g = prior.gmm
    rows.append(("prior update, cold EM (20 trials)", med, mn,
                 f"K={g.K} n={g.N} d={g.dim} it={g.n_iterations} conv={g.converged}"))

    def warm_setup():
        p = dyn.DynamicsPriorGMM()
        p.update(allX, allU)
        return p

    med, mn, p2 = timeit(lambda p: (p.update(allX2, allU2), p)[1], repeats, setup=warm_setup)
    g = p2.gmm
    rows.append(("prior update, warm EM (20 new trials)", med, mn,
                 f"K={g.K} it={g.n_iterations} conv={g.converged}"))

    # worst case per EM iteration: E-step + M-step with fully soft (uniform) responsibilities
    g = prior.gmm
    Z = (prior.transition_data() - g._c) / g._s
    soft = np.full((Z.shape[0], g.K), 1.0 / g.K)
    saved = (g._mu_s, g._sig_s, g.logmass)

    def em_iter():
        g._e_step(Z)
        g._m_step(Z, soft, None)
        g._set_params(*saved)

    med, mn, _ = timeit(em_iter, repeats)
    rows.append(("EM iteration, dense soft resp. (worst)", med, mn,
                 f"x{prior.em_iterations} it = {prior.em_iterations * med:.2f} s bound"))

    med, mn, _ = timeit(lambda: dyn.fit_linear_gaussian(X, U, prior=prior), repeats)
    rows.append(("fit, GMM prior (N=5)", med, mn, "eval_batch over 99 steps"))

    class _EvalOnly:
        def eval(self, dX_, dU_, pts):
            return prior.eval(dX_, dU_, pts)

    med, mn, _ = timeit(lambda: dyn.fit_linear_gaussian(X, U, prior=_EvalOnly()), repeats)
    rows.append(("fit, GMM prior via per-step eval", med, mn, "99 eval() calls"))

    def fitter_setup():
        f = dyn.DynamicsFitter()
        f.fit([_Traj(*c) for c in conds])
        return f

    med, mn, _ = timeit(lambda f: f.fit([_Traj(*c) for c in conds2]), repeats, setup=fitter_setup)
    rows.append(("DynamicsFitter.fit (4 cond, warm)", med, mn, "prior update + 4 fits"))

    print(f"gps_ros.dynamics benchmark  (N={N}, T={T}, dX={dX}, dU={dU}; BLAS threads="
          f"{ARGS.threads}; median of {repeats})")
    w = max(len(r[0]) for r in rows)
    print(f"{'case':<{w}}  {'median ms':>10}  {'min ms':>9}  notes")
    print("-" * (w + 40))
    for name, med, mn, note in rows:
        print(f"{name:<{w}}  {1e3 * med:>10.1f}  {1e3 * mn:>9.1f}  {note}")


if __name__ == "__main__":
    main()
