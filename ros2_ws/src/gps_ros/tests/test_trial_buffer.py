"""The newest-trials buffer of the dynamics priors: what it accepts (as float64), what it refuses
and with which message, and that it keeps exactly the newest ``max_samples`` trials."""
import numpy as np
import pytest

from gps_ros.dynamics.buffer import TrialBuffer, check_trials


def test_trials_are_float64_copies():
    X, U = np.ones((2, 3, 4), dtype=np.int32), np.zeros((2, 3, 1), dtype=np.float32)
    Xc, Uc = check_trials(X, U)
    assert Xc.dtype == np.float64 and Uc.dtype == np.float64
    b = TrialBuffer(5)
    b.add_trials(X, U)
    X[...] = 7                                   # the buffer keeps its own copies
    assert b._X[0].dtype == np.float64 and np.all(b._X[0] == 1.0)


SHAPES = r"X and U must be \(N, T, dX\) and \(N, T, dU\); got "


@pytest.mark.parametrize("X, U, message", [
    (np.zeros((2, 3)), np.zeros((2, 3, 1)), SHAPES + r"\(2, 3\), \(2, 3, 1\)"),
    (np.zeros((2, 3, 4)), np.zeros((2, 3)), SHAPES + r"\(2, 3, 4\), \(2, 3\)"),
    (np.zeros((2, 3, 4)), np.zeros((2, 4, 1)), SHAPES + r"\(2, 3, 4\), \(2, 4, 1\)"),
    (np.full((2, 3, 4), np.nan), np.zeros((2, 3, 1)), r"X and U must be finite"),
    (np.zeros((2, 3, 4)), np.full((2, 3, 1), np.inf), r"X and U must be finite"),
])
def test_bad_trials_are_refused_with_the_shapes(X, U, message):
    with pytest.raises(ValueError, match="^" + message + "$"):
        check_trials(X, U)


def test_a_trial_needs_a_transition_and_the_buffers_dimensions():
    b = TrialBuffer(5)
    with pytest.raises(ValueError, match=r"^trials need T >= 2 to contain a transition$"):
        b.add_trials(np.zeros((1, 1, 4)), np.zeros((1, 1, 2)))
    b.add_trials(np.zeros((1, 2, 1)), np.zeros((1, 2, 1)))      # T = 2, dX = 1: fine
    assert (b.dX, b.dU) == (1, 1)
    with pytest.raises(ValueError, match=r"^trials have \(dX, dU\) = \(2, 1\), prior has \(1, 1\)$"):
        b.add_trials(np.zeros((1, 2, 2)), np.zeros((1, 2, 1)))


def test_the_newest_max_samples_trials_are_kept():
    b = TrialBuffer(3)
    assert b.n_trials == 0 and b.dX is None and b.dU is None
    for i in range(5):
        b.add_trials(np.full((1, 2, 1), float(i)), np.full((1, 2, 1), -float(i)))
    assert b.n_trials == 3
    assert [x[0, 0] for x in b._X] == [2.0, 3.0, 4.0] and [u[0, 0] for u in b._U] == [-2.0, -3.0, -4.0]
    b.add_trials(np.full((4, 2, 1), 9.0), np.zeros((4, 2, 1)))
    assert b.n_trials == 3 and all(x[0, 0] == 9.0 for x in b._X)
