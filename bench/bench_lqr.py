"""LQR update time (KL-constrained dual search) and controller act latency.

    OPENBLAS_NUM_THREADS=1 python bench/bench_lqr.py [--repeats 20] [--baseline OLD_LQR_PY]

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
Targets: LQR update <= 20 ms per condition, act <= 20 us p99.
"""
import argparse
import importlib.util
import sys
import time

import numpy as np

from gps_ros.control import LinearGaussianController, QuadraticCost, kl_constrained_lqr

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
    args = ap.parse_args()
    solvers = {"now": kl_constrained_lqr}
    if args.baseline:
        solvers["before"] = load_baseline(args.baseline)
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

    # passes over varied problems: 4 systems, three step sizes, three cold starts
    reps = max(1, args.repeats // 4)
    print(f"\nvaried cold starts, 1 condition each (passes for systems 0-3; ms: median over "
          f"systems of the median of {reps}; KL/eps: min-max over systems)")
    hdr = "".join(f"{f'{n} passes':>16}{f'{n} ms':>10}{f'{n} KL/eps':>15}" for n in solvers)
    print(f"{'eps':<8}{'eta0':>6}{hdr}")
    total = {n: [] for n in solvers}
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
                    per[n][2].append(r.kl / r.epsilon)
            for n in solvers:
                its, ms, ratio = per[n]
                total[n] += its
                row += (f"{' '.join(str(i) for i in its):>16}{np.median(ms):>10.1f}"
                        f"{f'{min(ratio):.3f}-{max(ratio):.3f}':>15}")
            print(f"{f'{ef:g} T':<8}{eta0:>6g}{row}")
    print("mean passes over the 36 cases: "
          + ", ".join(f"{n} {np.mean(v):.2f} (max {max(v)})" for n, v in total.items()))


if __name__ == "__main__":
    main()
