"""The contracts of gps_ros.dynamics.prior (the GMM prior and the per-condition fitter) that the
end-to-end prior tests leave open, each against the formula of the module's docstring; the bug
each test catches is named (mutants of ``bench/mutation_score.py``)."""
from types import SimpleNamespace

import numpy as np
import pytest

from gps_ros.config import DynamicsConfig
from gps_ros.dynamics import DynamicsFitter, DynamicsPriorGMM, fit_linear_gaussian
from gps_ros.dynamics.prior import (COV_PRIOR, PolicyPriorGMM, gmm_prior_kwargs,
                                    nn_prior_kwargs)


def trials(N=4, T=6, dX=2, dU=1, seed=0):
    rng = np.random.default_rng(seed)
    X = np.cumsum(rng.standard_normal((N, T, dX)), axis=1)
    return X, rng.standard_normal((N, T, dU))


@pytest.mark.parametrize("kw", [dict(max_clusters=0), dict(min_samples_per_cluster=0),
                                dict(max_samples=0)])
def test_sizes_below_one_are_refused(kw):
    with pytest.raises(ValueError, match="^max_clusters, min_samples_per_cluster and max_samples "
                                         "must be >= 1$"):
        DynamicsPriorGMM(**kw)


@pytest.mark.parametrize("strength", [0.0, -1.0, float("nan")])
def test_strength_must_be_positive(strength):
    with pytest.raises(ValueError, match="^strength must be > 0$"):
        DynamicsPriorGMM(strength=strength)


def test_settings_reach_the_mixture():
    """Catches: the cov_prior default, the gmm_kwargs override, the seed, em_iterations / tol not
    handed to EM, sizes of exactly 1 refused."""
    p = DynamicsPriorGMM(max_clusters=1, min_samples_per_cluster=1, max_samples=1)
    assert p.gmm.cov_prior == COV_PRIOR == 10.0
    assert DynamicsPriorGMM(gmm_kwargs=dict(cov_prior=0.0)).gmm.cov_prior == 0.0
    assert DynamicsPriorGMM(gmm_kwargs=dict(eigreg=True)).gmm.cov_prior == COV_PRIOR
    for seed in (0, 5):
        assert DynamicsPriorGMM(seed=seed).gmm._rng.integers(1 << 30) == \
            np.random.default_rng(seed).integers(1 << 30)
    X, U = trials(N=6, T=12)
    p = DynamicsPriorGMM(min_samples_per_cluster=5, em_iterations=2, tol=0.0,
                         gmm_kwargs=dict(warmstart=False))
    p.update(X, U)
    assert p.gmm.n_iterations == 2 and not p.gmm.converged
    p = DynamicsPriorGMM(min_samples_per_cluster=30, em_iterations=50, tol=1e9)
    p.update(X, U)
    assert p.gmm.converged and p.gmm.n_iterations == 2
    assert (p.strength, p.em_iterations, p.tol) == (1.0, 50, 1e9)


def test_cluster_count():
    """K = max(2, min(max_clusters, floor(n / min_samples_per_cluster)))."""
    p = DynamicsPriorGMM(max_clusters=5, min_samples_per_cluster=10)
    assert [p.n_clusters(n) for n in (0, 19, 20, 29, 30, 49, 50, 51, 1000)] == \
        [2, 2, 2, 2, 3, 4, 5, 5, 5]
    X, U = trials(N=5, T=13)                                   # 60 tuples -> 5 // ... = 5
    p.update(X, U)
    assert p.gmm.K == 5
    q = DynamicsPriorGMM(max_clusters=1, min_samples_per_cluster=1)
    assert q.n_clusters(100) == 2


def test_eval_scales_the_mixture_by_strength():
    """m = n0 = strength, Phi = strength x the moment-matched covariance (eval and eval_batch);
    catches the scaling of m, n0 and Phi (and Phi scaled by m instead of n0 nowhere differs, so
    strengths 1 and 2.5 both)."""
    X, U = trials(N=5, T=8)
    P = np.stack([np.concatenate([X[:, t], U[:, t], X[:, t + 1]], axis=1) for t in range(7)])
    for strength in (1.0, 2.5):
        p = DynamicsPriorGMM(min_samples_per_cluster=10, strength=strength)
        p.update(X, U)
        mu0, Phi, m, n0 = p.eval(2, 1, P[3])
        gm, gP, _, _ = p.gmm.inference(P[3])
        np.testing.assert_array_equal(mu0, gm)
        np.testing.assert_allclose(Phi, strength * gP, rtol=1e-14)
        assert (m, n0) == (strength, strength)
        bm, bP, bmm, bn0 = p.eval_batch(2, 1, P)
        np.testing.assert_allclose(bP[3], Phi, rtol=1e-12)
        np.testing.assert_allclose(bm[3], mu0, rtol=1e-12)
        np.testing.assert_array_equal(bmm, np.full(7, strength))
        np.testing.assert_array_equal(bn0, np.full(7, strength))
        mu1, _, _, _ = p.eval(2, 1, P[3][0])                  # one point: 2-D promoted
        assert mu1.shape == (5,)


def test_eval_checks_what_it_is_given():
    X, U = trials()
    p = DynamicsPriorGMM()
    with pytest.raises(RuntimeError, match=r"^DynamicsPriorGMM has no data; call update\(\) first$"):
        p.eval(2, 1, np.zeros((3, 5)))
    p.update(X, U)
    with pytest.raises(ValueError, match="points of dimension 4 for dX=2, dU=1; prior was fitted "
                                         "with dX=2, dU=1"):
        p.eval(2, 1, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="points of dimension 5 for dX=1, dU=3"):
        p.eval_batch(1, 3, np.zeros((2, 3, 5)))               # D matches, the split does not
    q = PolicyPriorGMM()
    with pytest.raises(RuntimeError, match=r"^PolicyPriorGMM has no data; call update\(\) first$"):
        q.eval(2, 1, np.zeros((3, 3)))
    q.update(X, U)
    q.eval(2, 1, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="points of dimension 5 for dX=2, dU=1"):
        q.eval(2, 1, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="points of dimension 3 for dX=1, dU=2"):
        q.eval(1, 2, np.zeros((3, 3)))


def test_buffered_data():
    """Transition tuples [x_t, u_t, x_t+1] (T - 1 per trial) or policy pairs [x_t, u_t] (T per
    trial), in buffer order; empty buffers refused."""
    X, U = trials(N=2, T=4)
    p, q = DynamicsPriorGMM(), PolicyPriorGMM()
    for prior in (p, q):
        with pytest.raises(RuntimeError, match="^the prior's buffer is empty$"):
            prior.transition_data()
        with pytest.raises(RuntimeError, match="^the prior's buffer is empty$"):
            prior.initial_state()
        prior.add_trials(X, U)
    np.testing.assert_array_equal(p.transition_data()[4], np.r_[X[1, 1], U[1, 1], X[1, 2]])
    assert p.transition_data().shape == (6, 5)
    np.testing.assert_array_equal(q.transition_data()[5], np.r_[X[1, 1], U[1, 1]])
    assert q.transition_data().shape == (8, 3)


def test_initial_state_statistics():
    X, U = trials(N=3)
    p = DynamicsPriorGMM()
    p.add_trials(X, U)
    mu0, Phi = p.initial_state()
    np.testing.assert_allclose(mu0, X[:, 0].mean(0), rtol=1e-14)
    d0 = X[:, 0] - mu0
    np.testing.assert_allclose(Phi, d0.T @ d0 / 3 + 1e-6 * np.eye(2), rtol=1e-12)


def test_config_to_prior_keywords():
    cfg = DynamicsConfig(prior=dict(max_clusters=7, min_samples_per_cluster=9, max_samples=11,
                                    strength=2.0, em_iterations=13, cov_prior=3.0),
                         nn=dict(hidden=[8], max_samples=17, strength=0.5, steps=19,
                                 first_steps=23, batch_size=29, lr=0.01, weight_decay=0.1,
                                 zz_floor=0.2, threads=2))
    assert gmm_prior_kwargs(cfg, seed=4) == dict(
        max_clusters=7, min_samples_per_cluster=9, max_samples=11, strength=2.0,
        em_iterations=13, seed=4, gmm_kwargs=dict(cov_prior=3.0))
    assert nn_prior_kwargs(cfg, seed=4) == dict(
        hidden=[8], max_samples=17, strength=0.5, steps=19, first_steps=23, batch_size=29,
        lr=0.01, weight_decay=0.1, zz_floor=0.2, threads=2, seed=4)
    cfg.regularization = 0.25
    f = DynamicsFitter.from_config(cfg, seed=4)
    assert f.prior.max_clusters == 7 and f.prior.gmm.cov_prior == 3.0
    assert f.regularization == 0.25
    assert f.prior.gmm._rng.integers(1 << 30) == np.random.default_rng(4).integers(1 << 30)
    with pytest.raises(ValueError, match=r"^dynamics.type model_prior needs the robot model: build "
                                         r"the fitter with gps_ros.train.build_fitter\(cfg, task\)$"):
        DynamicsFitter.from_config(DynamicsConfig(type="model_prior"))
    pytest.importorskip("torch")
    from gps_ros.dynamics.nn_prior import DynamicsPriorNN

    nn = DynamicsFitter.from_config(DynamicsConfig(type="nn_prior", regularization=0.5,
                                                   nn=dict(hidden=[8])), seed=3)
    assert isinstance(nn.prior, DynamicsPriorNN) and nn.use_prior and nn.regularization == 0.5
    assert nn.prior.seed == 3


def test_fitter_passes_its_settings_and_buffers_round_robin():
    """Each condition's fit is fit_linear_gaussian with the fitter's prior and regularisations;
    trials enter the buffer round robin over conditions (unequal counts); no conditions: [];
    a condition without trials: its index in the message."""
    Xa, Ua = trials(N=2, seed=1)
    Xb, Ub = trials(N=4, seed=2)
    f = DynamicsFitter(regularization=0.3, x0_regularization=0.2,
                       prior_kwargs=dict(min_samples_per_cluster=5))
    dyn = f.fit([SimpleNamespace(X=Xa, U=Ua), SimpleNamespace(X=Xb, U=Ub)])
    order = np.stack(f.prior._X)
    np.testing.assert_array_equal(order, np.stack([Xa[0], Xb[0], Xa[1], Xb[1], Xb[2], Xb[3]]))
    ref = fit_linear_gaussian(Xb, Ub, prior=f.prior, regularization=0.3, x0_regularization=0.2)
    for k in ref._KEYS:
        np.testing.assert_allclose(getattr(dyn[1], k), getattr(ref, k), rtol=1e-12, atol=1e-15)
    assert f.fit([]) == []
    with pytest.raises(ValueError, match="condition 1 has no trials to fit dynamics to"):
        f.fit([SimpleNamespace(X=Xa, U=Ua), SimpleNamespace(X=Xa[:0], U=Ua[:0])])
    plain = DynamicsFitter(use_prior=False, regularization=0.3)
    assert plain.prior is None and not plain.use_prior
    d = plain.fit([SimpleNamespace(X=Xb, U=Ub)])[0]
    ref = fit_linear_gaussian(Xb, Ub, regularization=0.3)
    np.testing.assert_allclose(d.Fm, ref.Fm, rtol=1e-12)
    given = DynamicsPriorGMM()
    g = DynamicsFitter(use_prior=False, prior=given)
    assert g.prior is given and g.use_prior


def test_defaults():
    """The documented defaults (docstrings, config) of the prior, the fitter and the keywords."""
    import inspect

    def defaults(f):
        return {k: v.default for k, v in inspect.signature(f).parameters.items()
                if v.default is not inspect.Parameter.empty}

    assert defaults(DynamicsPriorGMM) == dict(max_clusters=20, min_samples_per_cluster=20,
                                              max_samples=20, strength=1.0, em_iterations=100,
                                              seed=0, tol=1e-5, gmm_kwargs=None)
    assert defaults(DynamicsFitter) == dict(use_prior=True, regularization=1e-6,
                                            prior_kwargs=None, x0_regularization=1e-6, prior=None)
    assert defaults(DynamicsFitter.from_config) == dict(seed=0)
    assert defaults(gmm_prior_kwargs) == dict(seed=0) == defaults(nn_prior_kwargs)


def test_fitter_with_one_trial_and_more_trials_than_steps():
    """One trial is enough for a condition; a condition with more trials (4) than time steps (3)
    buffers all of them."""
    Xa, Ua = trials(N=1, T=3, seed=3)
    Xb, Ub = trials(N=4, T=3, seed=4)
    f = DynamicsFitter(prior_kwargs=dict(min_samples_per_cluster=2))
    dyn = f.fit([SimpleNamespace(X=Xa, U=Ua), SimpleNamespace(X=Xb, U=Ub)])
    assert len(dyn) == 2 and f.prior.n_trials == 5
    np.testing.assert_array_equal(np.stack(f.prior._X),
                                  np.stack([Xa[0], Xb[0], Xb[1], Xb[2], Xb[3]]))
