"""The contracts of gps_ros.dynamics.nn_prior on a tiny network (a few Adam steps, milliseconds):
the network it builds, what a refit trains and measures, its prediction and linearisation against
the network evaluated by hand and finite differences, and the NIW prior against the module
docstring's formula.  Each test names the bugs it catches (mutants of bench/mutation_score.py)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gps_ros.dynamics.nn_prior import DynamicsPriorNN  # noqa: E402


def trials(N=3, T=8, dX=2, dU=1, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = scale * np.cumsum(rng.standard_normal((N, T, dX)), axis=1)
    return X, rng.standard_normal((N, T, dU))


def tiny(**kw):
    args = dict(hidden=(6, 5), steps=3, first_steps=5, batch_size=8, lr=1e-2, seed=1)
    args.update(kw)
    return DynamicsPriorNN(**args)


@pytest.mark.parametrize("kw", [dict(max_samples=0), dict(steps=-1), dict(first_steps=0),
                                dict(batch_size=0)])
def test_sizes_are_checked(kw):
    with pytest.raises(ValueError, match="max_samples, first_steps, batch_size must be >= 1 and "
                                         "steps >= 0"):
        DynamicsPriorNN(**kw)


@pytest.mark.parametrize("kw", [dict(strength=0.0), dict(lr=0.0), dict(weight_decay=-1e-9),
                                dict(zz_floor=-1e-9), dict(strength=float("nan"))])
def test_rates_are_checked(kw):
    with pytest.raises(ValueError, match="strength and lr must be > 0; weight_decay and zz_floor"):
        DynamicsPriorNN(**kw)


def test_edges_are_accepted():
    p = DynamicsPriorNN(max_samples=1, steps=0, first_steps=1, batch_size=1, weight_decay=0.0,
                        zz_floor=0.0)
    assert (p.max_samples, p.steps, p.first_steps, p.batch_size) == (1, 0, 1, 1)


def test_the_network_its_seed_and_its_standardisation():
    """Layers Linear(dZ, 6) SiLU Linear(6, 5) SiLU Linear(5, dX); the seed fixes the weights and
    leaves torch's global generator alone; z / Δx statistics with the std floor 1e-6 x max."""
    X, U = trials()
    X[:, :, 1] = 3.0                                             # a constant state dimension
    p = tiny()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    p.update(X, U)
    assert torch.rand(1) == before
    kinds = [type(m).__name__ for m in p.net]
    assert kinds == ["Linear", "SiLU", "Linear", "SiLU", "Linear"]
    assert [p.net[i].weight.shape for i in (0, 2, 4)] == [(6, 3), (5, 6), (2, 5)]
    q = tiny()
    q.update(X, U)
    for a, b in zip(p.net.parameters(), q.net.parameters()):
        assert torch.equal(a, b)
    r = tiny(seed=2)
    r.update(X, U)
    assert not torch.equal(next(r.net.parameters()), next(p.net.parameters()))
    Z = np.concatenate([X[:, :-1], U[:, :-1]], axis=2).reshape(-1, 3)
    D = (X[:, 1:] - X[:, :-1]).reshape(-1, 2)
    zm, zs, dm, ds = p._stats
    np.testing.assert_allclose(zm, Z.mean(0), rtol=1e-12)
    s = Z.std(0)
    np.testing.assert_allclose(zs, np.maximum(s, 1e-6 * s.max()), rtol=1e-12)
    assert zs[1] == pytest.approx(1e-6 * s.max())
    np.testing.assert_allclose(ds, [D[:, 0].std(), 1e-6 * D[:, 0].std()], rtol=1e-12)
    np.testing.assert_allclose(dm, D.mean(0), rtol=1e-12, atol=1e-15)


def test_all_zero_data_gets_unit_floor():
    p = tiny()
    p.update(np.zeros((2, 4, 2)), np.zeros((2, 4, 1)))
    np.testing.assert_allclose(p._stats[1], 1e-18)               # 1e-6 x the 1e-12 floor
    assert np.all(np.isfinite(p.res_cov))


def adam_steps(p):
    return int(next(iter(p._opt.state.values()))["step"])


def test_refit_trains_first_steps_then_steps_and_measures_its_residuals():
    """Catches: the step counts swapped, the threads not restored, the residual covariance (1 /
    (n - 1), centred, + 1e-9 x mean diagonal), zz_var, train_rms, n_refits, last_loss."""
    X, U = trials(N=4)
    p = tiny(threads=1)
    threads = torch.get_num_threads()
    p.update(X[:2], U[:2])
    assert adam_steps(p) == 5 and p.n_refits == 1 and torch.get_num_threads() == threads
    p.update(X[2:], U[2:])
    assert adam_steps(p) == 8 and p.n_refits == 2
    Z, Y = p._pairs()
    R = Y - p.predict(Z[:, :2], Z[:, 2:])
    np.testing.assert_allclose(p.train_rms, np.sqrt(np.mean((R - R.mean(0)) ** 2)), rtol=1e-5)
    Rc = R - R.mean(0)
    res = Rc.T @ Rc / (len(R) - 1)
    np.testing.assert_allclose(p.res_cov, res + 1e-9 * np.mean(np.diag(res)) * np.eye(2),
                               rtol=1e-5)
    np.testing.assert_array_equal(p.res_cov, p.res_cov.T)
    np.testing.assert_allclose(p.zz_var, Z.var(0), rtol=1e-12)
    with torch.no_grad():
        zm, zs, dm, ds = p._stats
        Zt = torch.from_numpy(((Z - zm) / zs).astype(np.float32))
        full = float(torch.mean((p.net(Zt) - torch.from_numpy(((Y - Z[:, :2] - dm) / ds)
                                                                .astype(np.float32))) ** 2))
    assert np.isfinite(p.last_loss) and 0.05 * full < p.last_loss < 20 * full
    q = tiny(steps=0)
    q.update(X, U)
    q.update(X, U)
    assert adam_steps(q) == 5                                    # steps 0: no training after


def test_zero_threads_leaves_torch_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    X, U = trials()
    tiny(threads=0).update(X, U)
    assert calls == []
    tiny(threads=1).update(X, U)
    assert calls[0] == 1 and len(calls) == 2


def test_refit_needs_data():
    with pytest.raises(RuntimeError, match="the prior's buffer is empty"):
        tiny().refit()
    with pytest.raises(RuntimeError, match=r"DynamicsPriorNN has no data; call update\(\) first"):
        tiny().predict(np.zeros((1, 2)), np.zeros((1, 1)))


def test_predict_and_linearize_are_the_network():
    """predict = x + net((z - zm) / zs) ds + dm; linearize's value is predict at z̄ (the identity
    part in float64) and its Jacobian matches central differences of predict."""
    X, U = trials(scale=50.0)
    p = tiny(first_steps=30)
    p.update(X, U)
    zm, zs, dm, ds = p._stats
    x, u = X[0, :4], U[0, :4]
    z = np.concatenate([x, u], axis=1)
    with torch.no_grad():
        g = p.net(torch.from_numpy(((z - zm) / zs).astype(np.float32))).double().numpy()
    np.testing.assert_allclose(p.predict(x, u), x + g * ds + dm, rtol=1e-12)
    fz, J = p.linearize(z)
    np.testing.assert_allclose(fz, p.predict(x, u), rtol=1e-5, atol=1e-4)
    assert fz.dtype == np.float64 and J.shape == (4, 2, 3)
    # float32 network: the Jacobian to float32 accuracy of central differences
    h = 1e-2 * zs
    for i in range(3):
        e = np.zeros(3)
        e[i] = h[i]
        fd = (p.predict((z + e)[:, :2], (z + e)[:, 2:]) - p.predict((z - e)[:, :2], (z - e)[:, 2:]))
        np.testing.assert_allclose(J[:, :, i], fd / (2 * h[i]), rtol=2e-2, atol=2e-3)
    # the identity part in float64: a state of size 1e6 survives to the last digit
    big = z.copy()
    big[:, 0] += 1e6 + 0.123456789
    fb, _ = p.linearize(big)
    off = fb[:, 0] - big[:, 0]
    with torch.no_grad():
        gb = p.net(torch.from_numpy(((big - zm) / zs).astype(np.float32))).double().numpy()
    np.testing.assert_allclose(off, gb[:, 0] * ds[0] + dm[0], rtol=1e-4, atol=1e-3)


def test_niw_prior_is_the_docstring_formula():
    """mu0 = [z̄; f(z̄)]; Σ0 = [[Σzz, Σzz Jᵀ], [J Σzz, J Σzz Jᵀ + Σres]] with Σzz = S_zz +
    zz_floor var_z + 1e-12; Phi = strength Σ0, m = n0 = strength."""
    X, U = trials(N=4)
    for strength, zz_floor in ((1.0, 1e-2), (3.0, 0.5)):
        p = tiny(strength=strength, zz_floor=zz_floor)
        p.update(X, U)
        P = np.concatenate([X[:, :-1], U[:, :-1], X[:, 1:]], axis=2).swapaxes(0, 1)   # (T-1, N, 5)
        mu0, Phi, m, n0 = p.eval_batch(2, 1, P)
        for t in (0, 4):
            Z = P[t, :, :3]
            zbar = Z.mean(0)
            Szz = (Z - zbar).T @ (Z - zbar) / len(Z) + np.diag(zz_floor * p.zz_var + 1e-12)
            fz, J = p.linearize(zbar[None])
            Sig = np.block([[Szz, Szz @ J[0].T], [J[0] @ Szz, J[0] @ Szz @ J[0].T + p.res_cov]])
            np.testing.assert_allclose(mu0[t], np.r_[zbar, fz[0]], rtol=1e-10)
            np.testing.assert_allclose(Phi[t], strength * Sig, rtol=1e-6, atol=1e-12)
            np.testing.assert_array_equal(Phi[t], Phi[t].T)
        np.testing.assert_array_equal(m, np.full(len(P), strength))
        np.testing.assert_array_equal(n0, m)
        assert m is not n0
        one = p.eval(2, 1, P[4])
        np.testing.assert_allclose(one[1], Phi[4], rtol=1e-12)
        assert one[2:] == (strength, strength) and isinstance(one[3], float)
    with pytest.raises(ValueError, match="points of dimension 4 for dX=2, dU=1; prior was "
                                         "fitted with dX=2, dU=1"):
        p.eval_batch(2, 1, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="points of dimension 5 for dX=1, dU=3"):
        p.eval_batch(1, 3, np.zeros((2, 3, 5)))
    with pytest.raises(RuntimeError, match="DynamicsPriorNN has no data"):
        tiny().eval(2, 1, np.zeros((3, 5)))


def test_pickle_keeps_the_network_its_optimiser_and_generator():
    import pickle

    X, U = trials(N=4)
    p = tiny()
    p.update(X[:2], U[:2])
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.predict(X[0], U[0]), p.predict(X[0], U[0]))
    assert q._stats is not None and all(np.array_equal(a, b) for a, b in zip(q._stats, p._stats))
    p.update(X[2:], U[2:])
    q.update(X[2:], U[2:])
    np.testing.assert_array_equal(q.predict(X[0], U[0]), p.predict(X[0], U[0]))
    empty = pickle.loads(pickle.dumps(tiny()))
    assert empty.net is None and not empty.fitted


def test_defaults_and_a_fresh_prior():
    import inspect
    import math

    assert {k: v.default for k, v in inspect.signature(DynamicsPriorNN).parameters.items()} == \
        dict(hidden=(128, 128), max_samples=200, strength=1.0, steps=300, first_steps=1500,
             batch_size=256, lr=1e-3, weight_decay=1e-5, zz_floor=1e-2, seed=0, threads=1)
    p = DynamicsPriorNN()
    assert p.net is None and p._opt is None and p._gen is None and p._stats is None
    assert p.res_cov is None and p.zz_var is None and p.n_refits == 0
    assert math.isnan(p.last_loss) and math.isnan(p.train_rms) and not p.fitted


def test_the_debug_line_reports_the_refit(caplog):
    import logging

    X, U = trials()
    p = tiny()
    with caplog.at_level(logging.DEBUG, logger="gps_ros.dynamics.nn_prior"):
        p.update(X, U)
    want = (f"NN dynamics prior: refit 1 on 21 tuples, loss {p.last_loss:.4g}, residual RMS "
            f"{p.train_rms:.3g}")
    assert [r.getMessage() for r in caplog.records] == [want]


def test_whole_messages():
    with pytest.raises(ValueError, match=r"^max_samples, first_steps, batch_size must be >= 1 and "
                                         r"steps >= 0$"):
        DynamicsPriorNN(batch_size=0)
    with pytest.raises(ValueError, match=r"^strength and lr must be > 0; weight_decay and zz_floor "
                                         r">= 0$"):
        DynamicsPriorNN(lr=0.0)
    with pytest.raises(RuntimeError, match=r"^DynamicsPriorNN has no data; call update\(\) first$"):
        tiny().eval(2, 1, np.zeros((3, 5)))
    with pytest.raises(RuntimeError, match="^the prior's buffer is empty$"):
        tiny().refit()
