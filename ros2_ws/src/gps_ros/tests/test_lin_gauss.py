"""The linear-Gaussian controller's own contract, each part against an independent reference:
log-density against scipy's multivariate normal, actions against the formula, the stored arrays'
types, symmetry and names, and the time-smoothed exploration noise against scipy's filter."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.stats import multivariate_normal

from gps_ros.control import LinearGaussianController, generate_noise

from test_control import random_controller


@pytest.mark.parametrize("dU", [1, 2, 3])
def test_log_prob_is_the_gaussian_log_density(dU):
    rng = np.random.default_rng(dU)
    T, dX, N = 4, 3, 5
    c = random_controller(rng, T, dX, dU)
    X, U = rng.standard_normal((N, T, dX)), rng.standard_normal((N, T, dU))
    ref = np.array([[multivariate_normal(c.K[t] @ X[n, t] + c.k[t], c.pol_covar[t]).logpdf(U[n, t])
                     for t in range(T)] for n in range(N)])
    np.testing.assert_allclose(c.log_prob(X, U), ref, rtol=1e-12, atol=1e-12)


def test_act_is_gain_times_state_plus_offset_plus_cholesky_times_noise():
    rng = np.random.default_rng(1)
    c = random_controller(rng, 3, 4, 2)
    x, eps = rng.standard_normal(4), rng.standard_normal(2)
    L = np.linalg.cholesky(c.pol_covar[1])
    np.testing.assert_allclose(c.act(1, x, eps), c.K[1] @ x + c.k[1] + L @ eps, rtol=1e-13)
    np.testing.assert_allclose(c.act(1, x), c.K[1] @ x + c.k[1], rtol=1e-13)
    X = rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(c.mean_actions(X)[1, 2], c.K[2] @ X[1, 2] + c.k[2], rtol=1e-13)


def test_arrays_are_float64_and_covariances_symmetric():
    """Integer inputs are stored as float64 (the message and file formats are float64), and a
    covariance given slightly asymmetric (rounding) is stored symmetric, with a matching
    Cholesky factor and inverse."""
    T, dU, dX = 2, 2, 3
    c = LinearGaussianController(np.ones((T, dU, dX), int), np.ones((T, dU), int),
                                 np.array([[[2.0, 0.3], [0.1, 1.0]]] * T))
    assert c.K.dtype == np.float64 and c.k.dtype == np.float64
    np.testing.assert_array_equal(c.pol_covar, np.swapaxes(c.pol_covar, 1, 2))
    np.testing.assert_allclose(c.pol_covar[0], [[2.0, 0.2], [0.2, 1.0]])
    np.testing.assert_allclose(c.chol_pol_covar @ np.swapaxes(c.chol_pol_covar, 1, 2), c.pol_covar)
    np.testing.assert_allclose(c.inv_pol_covar @ c.pol_covar, np.broadcast_to(np.eye(dU), (T, dU, dU)),
                               atol=1e-12)
    np.testing.assert_array_equal(c.inv_pol_covar, np.swapaxes(c.inv_pol_covar, 1, 2))


@pytest.mark.parametrize("k_shape, cov_shape", [((3, 2), (3, 2, 2)), ((3, 1), (3, 2, 2)),
                                                ((3, 2), (3, 1, 1)), ((2, 2), (2, 2, 2))])
def test_shapes_that_disagree_are_refused(k_shape, cov_shape):
    K = np.zeros((3, 2, 4))
    args = (K, np.zeros(k_shape), np.broadcast_to(np.eye(cov_shape[1]), cov_shape).copy())
    if k_shape == (3, 2) and cov_shape == (3, 2, 2):
        LinearGaussianController(*args)
        return
    with pytest.raises(ValueError, match="controller shapes disagree"):
        LinearGaussianController(*args)


def test_arrays_round_trip_under_their_file_names(tmp_path):
    c = random_controller(np.random.default_rng(2), 3, 4, 2)
    d = c.to_arrays()
    assert set(d) == {"K", "k", "pol_covar"}          # the names in controllers.npz
    np.savez(tmp_path / "c.npz", **d)
    back = LinearGaussianController.from_arrays(np.load(tmp_path / "c.npz"))
    for name in ("K", "k", "pol_covar", "chol_pol_covar", "inv_pol_covar"):
        np.testing.assert_array_equal(getattr(back, name), getattr(c, name))


def test_copy_is_independent():
    c = random_controller(np.random.default_rng(3), 3, 4, 2)
    d = c.copy()
    for name in ("K", "k", "pol_covar", "chol_pol_covar", "inv_pol_covar"):
        np.testing.assert_array_equal(getattr(d, name), getattr(c, name))
        getattr(d, name)[...] = 0.0
        assert np.any(getattr(c, name) != 0.0), name


def test_smoothed_noise_is_the_gaussian_filtered_noise_rescaled():
    """smooth=True: the same standard-normal draw filtered along time with std ``sigma`` steps
    (nearest-value edges; default sigma 1), each channel rescaled to unit empirical variance;
    sigma 0 or smooth=False: the draw itself."""
    raw = np.random.default_rng(4).standard_normal((3, 20, 2))
    for kw, sigma in (({}, 1.0), ({"sigma": 2.5}, 2.5)):
        ref = gaussian_filter1d(raw, sigma=sigma, axis=1, mode="nearest")
        ref /= ref.std(axis=1, keepdims=True)
        got = generate_noise(3, 20, 2, np.random.default_rng(4), smooth=True, **kw)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_array_equal(generate_noise(3, 20, 2, np.random.default_rng(4), smooth=True,
                                                 sigma=0.0), raw)
    np.testing.assert_array_equal(generate_noise(3, 20, 2, np.random.default_rng(4)), raw)
