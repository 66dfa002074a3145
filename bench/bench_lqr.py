"""LQR update time (KL-constrained dual search) and controller act latency.

    python bench/bench_lqr.py [--repeats 20]

Prints the median wall time of one KL-constrained LQR update (T=100, dX=32, dU=7) for one condition
and batched over 4, and the p50/p99 latency of LinearGaussianController.act.
Targets: LQR update <= 20 ms per condition, act <= 20 us p99.
"""
import argparse
import time

import numpy as np

from gps_ros.control import LinearGaussianController, QuadraticCost, kl_constrained_lqr


class Dyn:
    pass


def problem(rng, T=100, dX=32, dU=7):
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    T = 100
    probs = [problem(rng) for _ in range(4)]
    print(f"{'case':<34}{'median ms':>10}{'per cond ms':>13}{'dual iters':>12}")
    for M in (1, 4):
        times, iters = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = kl_constrained_lqr([p[0] for p in probs[:M]], [p[1] for p in probs[:M]],
                                     [p[2] for p in probs[:M]], [0.5 * T] * M, [1.0] * M)
            times.append(time.perf_counter() - t0)
            iters.append(np.mean([r.iterations for r in res]))
            assert all(r.converged for r in res)
        med = 1e3 * np.median(times)
        print(f"{f'LQR update, {M} condition(s)':<34}{med:>10.2f}{med / M:>13.2f}{np.mean(iters):>12.1f}")
        # a warm-started dual search (eta from the previous iteration), as in training
        etas = [r.eta for r in res]
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = kl_constrained_lqr([p[0] for p in probs[:M]], [p[1] for p in probs[:M]],
                                     [p[2] for p in probs[:M]], [0.5 * T] * M, etas)
            times.append(time.perf_counter() - t0)
        med = 1e3 * np.median(times)
        print(f"{f'  warm-started eta, {M} cond.':<34}{med:>10.2f}{med / M:>13.2f}"
              f"{np.mean([r.iterations for r in res]):>12.1f}")
        # one backward + forward pass, the unit the dual search repeats
    ctrl = res[0].controller
    x = rng.standard_normal(32)
    noise = rng.standard_normal((T, 7))
    lat = np.empty(20000)
    for i in range(lat.size):
        t = i % T
        t0 = time.perf_counter_ns()
        ctrl.act(t, x, noise[t])
        lat[i] = time.perf_counter_ns() - t0
    print(f"{'controller act (dX=32, dU=7)':<34}  p50 {np.percentile(lat, 50) / 1e3:.1f} us"
          f"   p99 {np.percentile(lat, 99) / 1e3:.1f} us")


if __name__ == "__main__":
    main()
