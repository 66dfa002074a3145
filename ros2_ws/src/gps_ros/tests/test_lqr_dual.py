"""The KL-constrained LQR's dual search rule by rule (as its docstring states them), the parabola
step against closed forms, and the results it returns on the paths the loop rarely takes: no
positive-definite pass at all, a search stopped before convergence."""
import logging

import numpy as np
import pytest

from gps_ros.control import forward_pass, kl_constrained_lqr
from gps_ros.control.lqr import (_FAIL_STEP, _MAX_DOWN, _MAX_UP, _SLOPE_DOWN, _SLOPE_UP,
                                 QuadraticCost, _DualSearch, _parabola_root)

from test_control import quadratic_cost, random_controller, random_system


# --- the parabola step ---------------------------------------------------------------------------
@pytest.mark.parametrize("c, r1, r2, lo, hi, expected", [
    (1.0, 1.0, 4.0, 0.0, 2.0, 1.0),      # opens up: falls through its smaller root
    (1.0, 1.0, 4.0, 3.0, 5.0, None),     # only the rising root 4 inside
    (-1.0, 1.0, 4.0, 3.0, 5.0, 4.0),     # opens down: falls through its larger root
    (-1.0, 1.0, 4.0, 0.0, 2.0, None),    # the rising root 1 only
    (0.3, -2.0, 0.5, -3.0, 0.0, -2.0),
    (1.0, 1.0, 4.0, 5.0, 9.0, None),     # no root inside
])
def test_parabola_root_is_the_falling_root_inside_the_bracket(c, r1, r2, lo, hi, expected):
    g = lambda u: c * (u - r1) * (u - r2)                     # noqa: E731
    us = [lo, hi, 0.5 * (lo + hi) + 0.1]
    got = _parabola_root([(u, g(u)) for u in us], lo, hi)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-9)


def test_parabola_root_of_three_collinear_points_is_the_line_root():
    g = lambda u: 2.0 - 0.5 * u                                 # noqa: E731   root 4
    got = _parabola_root([(0.0, g(0.0)), (6.0, g(6.0)), (1.0, g(1.0))], 0.0, 6.0)
    assert got == pytest.approx(4.0, abs=1e-9)


def test_parabola_without_real_roots_gives_none():
    g = lambda u: (u - 1.0) ** 2 + 1.0                          # noqa: E731
    assert _parabola_root([(0.0, g(0.0)), (3.0, g(3.0)), (2.0, g(2.0))], 0.0, 3.0) is None


# --- the search's rules ----------------------------------------------------------------------------
def search(eps=1.0):
    return _DualSearch(np.log(eps), np.log(1e-8), np.log(1e16))


def test_points_are_log_kl_over_epsilon_with_infinities_for_failed_and_zero_passes():
    s = search(eps=2.0)
    s.add(0.0, 2.0 * np.e)
    s.add(1.0, np.inf)       # a pass that was not positive definite
    s.add(2.0, 0.0)          # KL 0
    assert s.g[0] == pytest.approx(1.0) and s.g[1] == np.inf and s.g[2] == -np.inf
    z = _DualSearch(-np.inf, -10.0, 10.0)    # ε = 0 and KL = 0: nothing learned
    z.add(0.0, 0.0)
    assert z.g == [np.inf]


def test_bracket_is_the_tightest_pair_around_the_root():
    s = search()
    for u, kl in ((-3.0, 9.0), (-1.0, 2.0), (4.0, 0.1), (2.0, 0.5)):
        s.add(u, kl)
    lo, g_lo, hi, g_hi = s.bracket()
    assert (lo, hi) == (-1.0, 2.0)
    assert g_lo == pytest.approx(np.log(2.0)) and g_hi == pytest.approx(np.log(0.5))


@pytest.mark.parametrize("g0, expected_step", [
    (1.0, -1.0 / _SLOPE_UP),            # KL too large: η up along the assumed slope
    (-1.0, -(-1.0) / _SLOPE_DOWN),      # KL too small: η down
    (20.0, _MAX_UP),                    # capped up
    (-20.0, -_MAX_DOWN),                # capped down
])
def test_one_point_steps_along_the_assumed_slope_within_the_caps(g0, expected_step):
    s = search()
    s.add(0.5, np.exp(g0))
    assert s.next() == pytest.approx(0.5 + expected_step)


def test_after_only_failed_passes_eta_rises_by_the_fail_step():
    s = search()
    s.add(0.5, np.inf)
    assert s.next() == pytest.approx(0.5 + _FAIL_STEP)


def test_kl_zero_at_the_smallest_eta_lowers_it_by_the_largest_step():
    s = search()
    s.add(0.5, 0.0)
    assert s.next() == pytest.approx(0.5 - _MAX_DOWN)


def test_two_points_on_one_side_step_along_their_secant():
    s = search()
    s.add(0.0, np.exp(3.0))          # g = 3
    s.add(1.0, np.exp(2.0))          # g = 2: secant slope -1, root at 3
    assert s.next() == pytest.approx(3.0)


def test_a_bracket_steps_to_the_secant_root_strictly_inside_it():
    s = search()
    s.add(0.0, np.exp(1.0))
    s.add(2.0, np.exp(-3.0))         # secant slope -2, root at 0.5
    assert s.next() == pytest.approx(0.5)


def test_a_collapsed_bracket_ends_the_search():
    s = search()
    s.add(0.0, np.exp(1.0))
    s.add(1e-7, np.exp(-1.0))
    assert s.next() is None


def test_a_bracketed_search_that_stops_halving_bisects():
    """Inside a bracket the best |g| must halve at least every other step; here it does not
    (0.9 -> 0.8 -> 0.75), so the next point is the bracket's middle."""
    s = search()
    s.add(0.0, np.exp(0.9))
    s.add(4.0, np.exp(-3.0))
    s.next()                                        # now bracketed
    s.add(1.0, np.exp(0.8))
    s.next()
    s.add(1.5, np.exp(0.75))
    lo, _, hi, _ = s.bracket()
    assert s.next() == pytest.approx(0.5 * (lo + hi))


def test_a_point_already_tried_ends_the_search():
    s = _DualSearch(0.0, -1.0, 1.0)
    s.add(1.0, np.exp(5.0))                         # wants to go up, but 1.0 is log_max
    assert s.next() is None


# --- results on the rare paths -------------------------------------------------------------------
def _system(seed=0, T=8, dX=3, dU=2):
    rng = np.random.default_rng(seed)
    dyn, *_ = random_system(rng, T, dX, dU)
    cost = quadratic_cost(T, dX, dU, np.eye(dX), 0.1 * np.eye(dU), rng.standard_normal(dX))
    prev = random_controller(rng, T, dX, dU, scale=0.05, var=0.5)
    return dyn, cost, prev


def test_without_any_positive_definite_pass_the_previous_controller_is_kept(caplog):
    """An action cost that is strongly concave and η capped at 1: every backward pass fails.
    The result is the previous controller, η = max_eta, KL 0, not converged, with its own
    marginals, and one warning says so."""
    dyn, cost, prev = _system()
    Cm = cost.Cm.copy()
    Cm[:, 3:, 3:] = -100.0 * np.eye(2)
    bad = QuadraticCost(Cm, cost.cv, cost.cc)
    with caplog.at_level(logging.WARNING, logger="gps_ros.control.lqr"):
        (res,) = kl_constrained_lqr([dyn], [bad], [prev], [1.0], max_eta=1.0)
    assert not res.converged and res.eta == 1.0 and res.kl == 0.0 and res.epsilon == 1.0
    for name in ("K", "k", "pol_covar"):
        np.testing.assert_array_equal(getattr(res.controller, name), getattr(prev, name))
    assert res.controller is not prev                     # a copy: the caller may modify it
    mu, sigma = forward_pass(dyn.Fm[None], dyn.fv[None], dyn.dyn_covar[None], dyn.x0mu[None],
                             dyn.x0sigma[None], prev.K[None], prev.k[None], prev.pol_covar[None])
    np.testing.assert_allclose(res.mu, mu[0])
    np.testing.assert_allclose(res.sigma, sigma[0])
    assert caplog.messages == ["LQR: condition 0: no positive-definite solution up to eta=1; "
                               "keeping the previous controller"]


def test_the_results_marginals_are_those_of_the_returned_controller():
    dyn, cost, prev = _system(1)
    for eps in (0.5, np.inf):
        (res,) = kl_constrained_lqr([dyn], [cost], [prev], [eps])
        c = res.controller
        mu, sigma = forward_pass(dyn.Fm[None], dyn.fv[None], dyn.dyn_covar[None], dyn.x0mu[None],
                                 dyn.x0sigma[None], c.K[None], c.k[None], c.pol_covar[None])
        np.testing.assert_allclose(res.mu, mu[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.sigma, sigma[0], rtol=1e-9, atol=1e-12)


def test_a_search_stopped_early_warns_with_its_figures(caplog):
    dyn, cost, prev = _system(2)
    with caplog.at_level(logging.WARNING, logger="gps_ros.control.lqr"):
        (res,) = kl_constrained_lqr([dyn], [cost], [prev], [0.05], [1e-6], max_iterations=1)
    assert not res.converged and res.iterations == 1
    assert caplog.messages == [f"LQR: condition 0: dual search stopped at KL {res.kl:.4g} for "
                               f"epsilon 0.05 (eta {res.eta:.3g}) after 1 iterations"]
