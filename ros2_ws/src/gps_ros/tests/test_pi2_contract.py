"""PI²'s update and settings against independent references: the weighted shift of k and the
bias-corrected covariance ratio restated from the module docstring, the Gaussian KL of an update
from its general formula, the controller's derived factors, and the errors of every check."""
from types import SimpleNamespace

import numpy as np
import pytest

from gps_ros.control.pi2 import (PI2, check_samples, feedforward_kl, geometric_mean,
                                 pi2_controller)

from test_control import random_controller


def _reference_update(base, noise, w, damping, floor):
    N, T, dU = noise.shape
    dk = np.stack([base.chol_pol_covar[t] @ ((w[:, t] - 1.0 / N) @ noise[:, t]) for t in range(T)])
    s = np.ones(T)
    for t in range(T):
        e = noise[:, t]
        mean_w = w[:, t] @ e
        cov_w = (w[:, t, None] * (e - mean_w) ** 2).sum() / (1.0 - (w[:, t] ** 2).sum())
        cov_u = ((e - e.mean(0)) ** 2).sum() / (N - 1)
        s[t] = np.clip((cov_w / cov_u) ** (1.0 / damping), floor, 1.0 / floor)
    return dk, s


def test_update_is_the_weighted_shift_and_the_bias_corrected_covariance_ratio():
    rng = np.random.default_rng(0)
    N, T, dU = 6, 3, 2
    base = random_controller(rng, T, 4, dU)
    noise = rng.standard_normal((N, T, dU))
    w = rng.dirichlet(np.ones(N), size=T).T                      # (N, T), columns sum to 1
    ctrl, dk, s = pi2_controller(base, noise, w, covariance_damping=2.0, min_cov_scale=0.2)
    ref_dk, ref_s = _reference_update(base, noise, w, 2.0, 0.2)
    np.testing.assert_allclose(dk, ref_dk, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s, ref_s, rtol=1e-12)
    np.testing.assert_allclose(ctrl.k, base.k + dk, rtol=1e-12)
    np.testing.assert_array_equal(ctrl.K, base.K)
    np.testing.assert_allclose(ctrl.pol_covar, base.pol_covar * s[:, None, None], rtol=1e-12)
    # the factors handed to the controller are those of its covariance
    np.testing.assert_allclose(ctrl.chol_pol_covar @ np.swapaxes(ctrl.chol_pol_covar, 1, 2),
                               ctrl.pol_covar, rtol=1e-10)
    np.testing.assert_allclose(ctrl.inv_pol_covar @ ctrl.pol_covar,
                               np.broadcast_to(np.eye(dU), (T, dU, dU)), atol=1e-10)


def test_uniform_one_hot_and_single_sample_weights():
    rng = np.random.default_rng(1)
    base = random_controller(rng, 2, 3, 2)
    noise = rng.standard_normal((5, 2, 2))
    _, dk, s = pi2_controller(base, noise, np.full((5, 2), 0.2), 2.0, 0.5)
    np.testing.assert_allclose(dk, 0.0, atol=1e-15)
    np.testing.assert_allclose(s, 1.0, rtol=1e-12)              # uniform: no change
    one_hot = np.zeros((5, 2))
    one_hot[3] = 1.0
    _, dk, s = pi2_controller(base, noise, one_hot, 2.0, 0.5)
    np.testing.assert_allclose(s, 0.5)                          # the floor
    np.testing.assert_allclose(dk[1], base.chol_pol_covar[1] @ (noise[3, 1] - noise[:, 1].mean(0)))
    _, _, s = pi2_controller(base, noise[:1], np.ones((1, 2)), 2.0, 0.5)
    np.testing.assert_array_equal(s, 1.0)                       # one sample: no estimate


def test_covariance_growth_is_capped_at_the_inverse_floor():
    noise = np.zeros((4, 1, 1))
    noise[:, 0, 0] = [-3.0, -0.1, 0.1, 3.0]
    w = np.array([[0.5], [0.0], [0.0], [0.5]])                  # all weight on the far samples
    base = random_controller(np.random.default_rng(2), 1, 2, 1)
    _, _, s = pi2_controller(base, noise, w, covariance_damping=1.0, min_cov_scale=0.5)
    assert s[0] == 2.0


def test_feedforward_kl_is_the_gaussian_kl():
    rng = np.random.default_rng(3)
    prev = random_controller(rng, 3, 2, 2)
    dk, s = rng.standard_normal((3, 2)), np.array([0.5, 1.0, 1.7])
    for t in range(3):
        S0, S1 = prev.pol_covar[t], s[t] * prev.pol_covar[t]
        P0 = np.linalg.inv(S0)
        ref = 0.5 * (np.trace(P0 @ S1) + dk[t] @ P0 @ dk[t] - 2
                     + np.log(np.linalg.det(S0) / np.linalg.det(S1)))
        assert feedforward_kl(prev, dk, s)[t] == pytest.approx(ref, rel=1e-10)


def test_geometric_mean_of_the_usable_temperatures():
    assert geometric_mean(np.array([1.0, 4.0, np.inf, 0.0, -1.0])) == pytest.approx(2.0)
    assert geometric_mean(np.array([np.inf, 0.0])) == np.inf


def test_settings_come_from_the_config_and_are_checked():
    p = PI2.from_config(SimpleNamespace(pi2_kl_step=0.3, pi2_covariance_damping=4.0,
                                        pi2_min_cov_scale=0.25))
    assert (p.kl_step, p.covariance_damping, p.min_cov_scale) == (0.3, 4.0, 0.25)
    PI2(min_cov_scale=1.0)
    for kw, msg in (({"kl_step": 0.0}, r"kl_step must be > 0, got 0.0"),
                    ({"covariance_damping": 0.0}, r"covariance_damping must be > 0, got 0.0"),
                    ({"min_cov_scale": 0.0}, r"min_cov_scale must be in \(0, 1\], got 0.0"),
                    ({"min_cov_scale": 1.5}, r"min_cov_scale must be in \(0, 1\], got 1.5")):
        with pytest.raises(ValueError, match="^" + msg + "$"):
            PI2(**kw)


def test_samples_are_checked_per_condition():
    tr = SimpleNamespace(X=np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match=r"^PI² needs the samples and their per-step costs "
                                         r"\(samples=, sample_costs=\); the LQR-only interface "
                                         r"gives it neither$"):
        check_samples([tr], None, 1, "PI²")
    with pytest.raises(ValueError, match=r"^PI² needs the samples"):
        PI2().optimize([], [], [random_controller(np.random.default_rng(0), 2, 2, 1)], [1.0], [1.0])
    with pytest.raises(ValueError, match=r"^PI²: 1 sample sets and 2 cost arrays for 1 conditions$"):
        check_samples([tr], [np.zeros((3, 4))] * 2, 1, "PI²")
    with pytest.raises(ValueError, match=r"^PI²: condition 0: per-step costs \(3, 5\) do not match "
                                         r"the samples' \(N, T\) = \(3, 4\)$"):
        check_samples([tr], [np.zeros((3, 5))], 1, "PI²")
    with pytest.raises(ValueError, match=r"^PI²: condition 0: non-finite sample costs$"):
        check_samples([tr], [np.full((3, 4), np.nan)], 1, "PI²")
    (c,) = check_samples([tr], [[[1] * 4] * 3], 1, "PI²")
    assert c.dtype == np.float64 and c.shape == (3, 4)


# --- weights and temperatures ----------------------------------------------------------------------
def test_softmax_weights_per_step_even_with_very_different_cost_scales():
    from scipy.special import softmax

    from gps_ros.control.pi2 import softmax_weights

    rng = np.random.default_rng(4)
    S = rng.uniform(0, 5, (6, 3))
    S[:, 1] += 1e4                                  # a step whose costs-to-go are all large
    eta = np.array([0.5, 2.0, np.inf])
    w = softmax_weights(S, eta)
    np.testing.assert_allclose(w[:, 0], softmax(-S[:, 0] / 0.5), rtol=1e-12)
    np.testing.assert_allclose(w[:, 1], softmax(-(S[:, 1] - 1e4) / 2.0), rtol=1e-10)
    np.testing.assert_allclose(w[:, 2], 1 / 6)      # infinite temperature: uniform


def test_temperatures_spend_the_budget_without_exceeding_it():
    from gps_ros.control.pi2 import _MAX_BISECTIONS, softmax_weights, solve_temperature, weights_kl

    rng = np.random.default_rng(5)
    S = rng.gamma(2.0, 1.0, (10, 4)) * np.array([1.0, 10.0, 0.1, 1e3])
    eta, w, kl, conv, it = solve_temperature(S, 0.5, tolerance=0.05)
    assert conv.all() and 1 <= it <= _MAX_BISECTIONS
    assert np.all(kl <= 0.5 + 1e-12) and np.all(kl >= 0.5 * 0.95)
    np.testing.assert_allclose(w, softmax_weights(S, eta), rtol=1e-12)
    np.testing.assert_allclose(kl, weights_kl(w), rtol=1e-12)
    with pytest.raises(ValueError, match=r"^PI² KL budget must be > 0, got 0.0$"):
        solve_temperature(S, 0.0)


def test_flat_and_unspendable_steps():
    """A step whose costs-to-go are equal (to 1e-12 of their size) gets η = inf and uniform
    weights; a budget beyond log N gets the smallest temperature (one-hot weights, KL = log N) and
    counts as converged."""
    from gps_ros.control.pi2 import _TAU_MIN, solve_temperature

    S = np.array([[1e6, 1.0, 0.0, 0.5],
                  [1e6 + 1e-7, 1.0 + 1.5e-12, 0.0, 0.9],
                  [1e6, 1.0, 0.0, 0.1]])
    eta, w, kl, conv, _ = solve_temperature(S, 0.3)
    assert np.isinf(eta[0]) and np.isinf(eta[2])            # 1e-7 next to 1e6: flat
    assert np.isfinite(eta[1])                             # 1.5e-12 next to 1: not flat
    np.testing.assert_allclose(w[:, [0, 2]], 1 / 3)
    assert conv.all()
    eta, w, kl, conv, _ = solve_temperature(S[:, 3:], np.log(3) + 1.0)
    assert eta[0] == pytest.approx(_TAU_MIN * 0.8) and kl[0] <= np.log(3) + 1e-12 and conv[0]


def test_whitened_noise_is_the_sampling_noise_and_checks_shapes():
    from gps_ros.control.pi2 import whitened_noise

    rng = np.random.default_rng(6)
    ctrl = random_controller(rng, 3, 2, 2)
    X = rng.standard_normal((4, 3, 2))
    eps = rng.standard_normal((4, 3, 2))
    U = np.stack([np.stack([ctrl.act(t, X[n, t], eps[n, t]) for t in range(3)]) for n in range(4)])
    np.testing.assert_allclose(whitened_noise(ctrl, X, U), eps, rtol=1e-10, atol=1e-12)
    for Xb, Ub in ((X[:, :2], U[:, :2]), (X, U[..., :1]), (X[..., :1], U)):
        with pytest.raises(ValueError, match=r"^samples X .* do not fit a controller with "
                                             r"T=3, dU=2, dX=2$"):
            whitened_noise(ctrl, Xb, Ub)


def test_two_samples_are_enough_for_a_covariance_estimate_and_equal_noise_changes_nothing():
    base = random_controller(np.random.default_rng(7), 2, 2, 1)
    noise = np.array([[[1.0], [0.3]], [[-1.0], [0.3]]])        # step 1: both samples equal
    w = np.array([[1.0, 0.9], [0.0, 0.1]])
    _, _, s = pi2_controller(base, noise, w)                    # defaults: damping 2, floor 0.5
    assert s[0] == 0.5                                          # one-hot: the floor
    assert s[1] == 1.0                                          # no spread: no change
    noise3 = np.array([[[1.0], [0.3]], [[-1.0], [0.2]], [[0.1], [-0.4]]])
    w3 = np.array([[0.6, 0.2], [0.3, 0.3], [0.1, 0.5]])
    _, _, s_default = pi2_controller(base, noise3, w3)
    _, _, s_explicit = pi2_controller(base, noise3, w3, 2.0, 0.5)
    _, _, s_other = pi2_controller(base, noise3, w3, 3.0, 0.5)
    np.testing.assert_array_equal(s_default, s_explicit)
    assert not np.allclose(s_default, s_other) and not np.allclose(s_default, 1.0)


def test_a_temperature_floor_only_raises_temperatures_and_converges_below_budget():
    rng = np.random.default_rng(8)
    prev = random_controller(rng, 3, 2, 1)
    noise, S = rng.standard_normal((8, 3, 1)), rng.gamma(2.0, 1.0, (8, 3))
    p = PI2(kl_step=0.5)
    _, eta0, kl0, _, _, _, _ = p.step(prev, noise, S)
    floor = np.array([0.0, 1e6, 1e6])
    _, eta, kl, conv, _, _, _ = p.step(prev, noise, S, eta_floor=floor)
    assert eta[0] == eta0[0] and np.all(eta[1:] == 1e6)
    assert kl[0] == pytest.approx(kl0[0]) and np.all(kl[1:] < 1e-4) and conv.all()


def test_optimize_reports_its_budget_and_bisections():
    from gps_ros.control.pi2 import solve_temperature
    from test_traj_opt import toy_dynamics, toy_quadratic, traj

    rng = np.random.default_rng(9)
    T = 15
    prev = random_controller(rng, T, 2, 1)
    X, U = rng.standard_normal((6, T, 2)), rng.standard_normal((6, T, 1))
    c = rng.gamma(2.0, 1.0, (6, T))
    (res,) = PI2(kl_step=0.4).optimize([toy_dynamics()], [toy_quadratic()], [prev], [1.0], [1.0],
                                       samples=[traj(X, U)], sample_costs=[c])
    from gps_ros.control.pi2 import cost_to_go
    it = solve_temperature(cost_to_go(c), 0.4, 0.05)[4]
    assert res.iterations == it and res.pi2_epsilon == 0.4 and res.epsilon == pytest.approx(0.4 * T)
    assert res.converged and np.all(res.weight_kl <= 0.4 + 1e-12)
