"""LQR update time (KL-constrained dual search) and controller act latency.

    OPENBLAS_NUM_THREADS=1 python bench/bench_lqr.py [--repeats 20] [--baseline OLD_LQR_PY]
        [--reference GPS_CHECKOUT]

Prints the median wall time of one KL-constrained LQR update (T=100, dX=32, dU=7) for one condition
and batched over 4, cold (eta0 = 1) and warm-started, and the p50/p99 latency of
LinearGaussianController.act.  Then the cold-start update in detail: its dual-search passes
(backward + forward passes), time, and the final KL/epsilon — the "equal tolerance" check: every
implementation must end with |KL/eps - 1| <= 0.1 (kl_tolerance) — and the passes over varied
problems (4 systems x eps in {0.1, 0.5, 2} T x cold eta0 in {1e-2, 1, 1e3}), so that an
improvement is not tuned to one case.

``--baseline`` loads another version of ``gps_ros/control/lqr.py`` (e.g. the previous commit's:
``git show HEAD~1:ros2_ws/src/gps_ros/gps_ros/control/lqr.py > /tmp/lqr_before.py``) and times it
interleaved with the current one, so both see the same machine load.

``--reference`` times the published GPS implementation's ``TrajOptLQRPython.update`` (a checkout of
https://github.com/cbfinn/gps, which is not a dependency and is not vendored: give its path) on the
same problems, interleaved, through its own ``AlgorithmTrajOpt.compute_costs``; its heavy
algorithm modules (MDGPS / BADMM, only used there for isinstance checks) are replaced by empty
classes.  Its tolerance is the same |KL - eps| < 0.1 eps.  It also checks that both give the same
controller at the same eta (one pass each at our final eta).
Targets: LQR update <= 20 ms per condition, act <= 20 us p99.
"""
import argparse
import importlib.util
import os
import sys
import time

import numpy as np

from gps_ros.control import LinearGaussianController, QuadraticCost, kl_constrained_lqr
from gps_ros.control.lqr import backward_pass

T = 100


class Dyn:
    pass


def problem(rng, T=T, dX=32, dU=7):
    d = Dyn()
    A = np.eye(dX) + 0.02 * rng.standard_normal((dX, dX))
    B = 0.05 * rng.standard_normal((dX, dU))
    d.Fm = np.zeros((T, dX, dX + dU))
    d.Fm[:-1] = np.hstack([A, B])
    d.fv = np.zeros((T, dX))
    d.fv[:-1] = 0.01 * rng.standard_normal(dX)
    d.dyn_covar = np.zeros((T, dX, dX))
    d.dyn_covar[:-1] = 1e-4 * np.eye(dX)
    d.x0mu = rng.standard_normal(dX)
    d.x0sigma = 1e-4 * np.eye(dX)
    Cm = np.zeros((T, dX + dU, dX + dU))
    Cm[:, :dX, :dX] = np.eye(dX)
    Cm[:, dX:, dX:] = 1e-2 * np.eye(dU)
    cost = QuadraticCost(Cm, np.zeros((T, dX + dU)), np.zeros(T))
    prev = LinearGaussianController(np.zeros((T, dU, dX)), np.zeros((T, dU)),
                                    np.broadcast_to(np.eye(dU), (T, dU, dU)).copy())
    return d, cost, prev


def load_baseline(path):
    """Another lqr.py as the module gps_ros.control._lqr_baseline (its relative imports resolve)."""
    spec = importlib.util.spec_from_file_location("gps_ros.control._lqr_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.kl_constrained_lqr


def load_reference(checkout):
    """cbfinn/gps's LQR dual search as a solver with kl_constrained_lqr's signature."""
    import types
    from types import SimpleNamespace

    sys.path.insert(0, os.path.join(checkout, "python"))
    for name, cls in (("gps.algorithm.algorithm_badmm", "AlgorithmBADMM"),
                      ("gps.algorithm.algorithm_mdgps", "AlgorithmMDGPS")):
        mod = types.ModuleType(name)
        setattr(mod, cls, type(cls, (), {}))
        sys.modules[name] = mod
    from gps.algorithm.algorithm_traj_opt import AlgorithmTrajOpt
    from gps.algorithm.algorithm_utils import TrajectoryInfo
    from gps.algorithm.policy.lin_gauss_policy import LinearGaussianPolicy
    from gps.algorithm.traj_opt.traj_opt_lqr_python import TrajOptLQRPython
    from gps.algorithm.traj_opt.traj_opt_utils import traj_distr_kl

    class Algo:                                   # the attributes TrajOptLQRPython.update reads
        compute_costs = AlgorithmTrajOpt.compute_costs

        def __init__(self, d, cost, prev, eps, eta0):
            info = TrajectoryInfo()
            info.dynamics = SimpleNamespace(Fm=d.Fm, fv=d.fv, dyn_covar=d.dyn_covar)
            info.x0mu, info.x0sigma = d.x0mu, d.x0sigma
            info.Cm, info.cv, info.cc = cost.Cm, cost.cv, cost.cc
            policy = LinearGaussianPolicy(prev.K.copy(), prev.k.copy(), prev.pol_covar.copy(),
                                          prev.chol_pol_covar.copy(), prev.inv_pol_covar.copy())
            self.T = prev.T
            self._hyperparams = {"max_ent_traj": 0.0}
            self.base_kl_step = eps / self.T
            self.cur = [SimpleNamespace(eta=float(eta0), step_mult=1.0, traj_info=info,
                                        traj_distr=policy)]

    opt = TrajOptLQRPython({})
    passes = [0]
    backward = opt.backward

    def counted(*a, **kw):
        passes[0] += 1
        return backward(*a, **kw)

    opt.backward = counted

    def solve(dyn, costs, prevs, eps, eta0):
        out = []
        for d, c, p, e, e0 in zip(dyn, costs, prevs, eps, eta0):
            algo = Algo(d, c, p, e, e0)
            passes[0] = 0
            new, eta = opt.update(0, algo)
            mu, sigma = opt.forward(new, algo.cur[0].traj_info)
            kl = float(traj_distr_kl(mu, sigma, new, algo.cur[0].traj_distr))
            out.append(SimpleNamespace(controller=new, eta=float(eta), kl=kl, epsilon=float(e),
                                       iterations=passes[0],
                                       converged=abs(kl - e) < 0.1 * e))
        return out

    def one_pass(d, cost, prev, eta):
        """The reference's controller after one backward pass at ``eta``."""
        algo = Algo(d, cost, prev, 1.0, eta)
        return backward(algo.cur[0].traj_distr, algo.cur[0].traj_info, float(eta), algo, 0)[0]

    solve.one_pass = one_pass
    return solve


def timed(solvers, args, repeats):
    """Median ms per solver, the solvers interleaved in each repeat; and each one's last results."""
    times = {name: [] for name in solvers}
    out = {}
    for _ in range(repeats):
        for name, solve in solvers.items():
            t0 = time.perf_counter()
            out[name] = solve(*args)
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(ts)) for name, ts in times.items()}, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--baseline", help="another lqr.py to compare with (timed interleaved)")
    ap.add_argument("--reference", metavar="GPS_CHECKOUT",
                    help="a checkout of github.com/cbfinn/gps: time its TrajOptLQRPython too")
    args = ap.parse_args()
    solvers = {"now": kl_constrained_lqr}
    if args.baseline:
        solvers["before"] = load_baseline(args.baseline)
    if args.reference:
        if not os.path.isdir(os.path.join(args.reference, "python", "gps")):
            ap.error(f"--reference {args.reference}: not a checkout of github.com/cbfinn/gps "
                     "(no python/gps in it)")
        solvers["ref"] = load_reference(args.reference)
    rng = np.random.default_rng(0)
    probs = [problem(rng) for _ in range(4)]
    tol = 0.1

    cols = "".join(f"{f'{n} ms':>15}{f'{n} /cond':>15}{f'{n} passes':>15}" for n in solvers)
    print(f"{'case':<30}{cols}")
    for M in (1, 4):
        dyn, cost, prev = ([p[i] for p in probs[:M]] for i in range(3))
        med, res = timed(solvers, (dyn, cost, prev, [0.5 * T] * M, [1.0] * M), args.repeats)
        row = ""
        for n in solvers:
            assert all(r.converged and abs(r.kl - r.epsilon) <= tol * r.epsilon for r in res[n])
            row += (f"{med[n]:>15.2f}{med[n] / M:>15.2f}"
                    f"{np.mean([r.iterations for r in res[n]]):>15.1f}")
        print(f"{f'LQR update, {M} condition(s)':<30}{row}")
        # a warm-started dual search (eta from the previous iteration), as in training
        etas = [r.eta for r in res["now"]]
        med, res = timed(solvers, (dyn, cost, prev, [0.5 * T] * M, etas), args.repeats)
        row = "".join(f"{med[n]:>15.2f}{med[n] / M:>15.2f}"
                      f"{np.mean([r.iterations for r in res[n]]):>15.1f}" for n in solvers)
        print(f"{f'  warm-started eta, {M} cond.':<30}{row}")

    ctrl = res["now"][0].controller
    x = rng.standard_normal(32)
    noise = rng.standard_normal((T, 7))
    lat = np.empty(20000)
    for i in range(lat.size):
        t = i % T
        t0 = time.perf_counter_ns()
        ctrl.act(t, x, noise[t])
        lat[i] = time.perf_counter_ns() - t0
    print(f"{'controller act (dX=32, dU=7)':<30}  p50 {np.percentile(lat, 50) / 1e3:.1f} us"
          f"   p99 {np.percentile(lat, 99) / 1e3:.1f} us")

    # the cold-start update in detail, at equal tolerance
    print(f"\ncold start, 1 condition, eps = 0.5 T, eta0 = 1, tolerance {tol} "
          f"(equal tolerance: |KL/eps - 1| <= {tol})")
    print(f"{'':<10}{'passes':>8}{'median ms':>11}{'KL/eps':>9}{'eta':>11}")
    d, c, p = probs[0]
    med, res = timed(solvers, ([d], [c], [p], [0.5 * T], [1.0]), args.repeats)
    for n in solvers:
        (r,) = res[n]
        assert r.converged and abs(r.kl / r.epsilon - 1) <= tol
        print(f"{n:<10}{r.iterations:>8d}{med[n]:>11.2f}{r.kl / r.epsilon:>9.3f}{r.eta:>11.4g}")
    if "ref" in solvers:
        print(f"cold-start speed-up vs the reference: {med['ref'] / med['now']:.1f}x "
              f"({res['ref'][0].iterations} vs {res['now'][0].iterations} passes)")
        # the same controller at the same eta (one backward pass each at our final eta)
        eta = res["now"][0].eta
        mine = backward_pass(d.Fm[None], d.fv[None], c.Cm[None], c.cv[None], p.K[None],
                             p.k[None], p.inv_pol_covar[None], np.array([eta]))
        ref = solvers["ref"].one_pass(d, c, p, eta)
        print(f"same eta ({eta:.4g}), one backward pass each: max |K - K_ref| = "
              f"{np.abs(mine[0][0] - ref.K).max():.2e} (|K| max {np.abs(ref.K).max():.3g}), "
              f"max |k - k_ref| = {np.abs(mine[1][0] - ref.k).max():.2e}, "
              f"max |pol_covar - ref| = {np.abs(mine[2][0] - ref.pol_covar).max():.2e}")

    # passes over varied problems: 4 systems, three step sizes, three cold starts
    reps = max(1, args.repeats // 4)
    print(f"\nvaried cold starts, 1 condition each (passes for systems 0-3; ms: median over "
          f"systems of the median of {reps}; KL/eps: min-max over systems)")
    hdr = "".join(f"{f'{n} passes':>16}{f'{n} ms':>10}{f'{n} KL/eps':>15}" for n in solvers)
    print(f"{'eps':<8}{'eta0':>6}{hdr}")
    total = {n: [] for n in solvers}
    times = {n: [] for n in solvers}     # ms per case, for the reference ratio
    for ef in (0.1, 0.5, 2.0):
        for eta0 in (1e-2, 1.0, 1e3):
            row = ""
            per = {n: ([], [], []) for n in solvers}
            for d, c, p in probs:
                med, res = timed(solvers, ([d], [c], [p], [ef * T], [eta0]), reps)
                for n in solvers:
                    (r,) = res[n]
                    assert r.converged and abs(r.kl / r.epsilon - 1) <= tol
                    per[n][0].append(r.iterations)
                    per[n][1].append(med[n])
                    times[n].append(med[n])
                    per[n][2].append(r.kl / r.epsilon)
            for n in solvers:
                its, ms, ratio = per[n]
                total[n] += its
                row += (f"{' '.join(str(i) for i in its):>16}{np.median(ms):>10.1f}"
                        f"{f'{min(ratio):.3f}-{max(ratio):.3f}':>15}")
            print(f"{f'{ef:g} T':<8}{eta0:>6g}{row}")
    print("mean passes over the 36 cases: "
          + ", ".join(f"{n} {np.mean(v):.2f} (max {max(v)})" for n, v in total.items()))
    if "ref" in solvers:
        print("median time over the 36 cases, reference / now: "
              f"{np.median(np.array(times['ref']) / np.array(times['now'])):.1f}x "
              f"(min {np.min(np.array(times['ref']) / np.array(times['now'])):.1f}x)")


if __name__ == "__main__":
    main()
