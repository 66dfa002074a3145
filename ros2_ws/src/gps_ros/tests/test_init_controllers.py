"""The PD-hold / joint-feedback initial controllers: the control law they state, the forms their
gains and variance take, and the errors that name the setting."""
import numpy as np
import pytest

from gps_ros.control.init import joint_feedback_controller, pd_hold_controller

POS, VEL = np.array([0, 1]), np.array([2, 3])          # x = [q1, q2, q̇1, q̇2, extra]


def test_pd_hold_is_stiffness_times_error_minus_damping_times_velocity():
    c = pd_hold_controller(4, 5, [1, -1], POS, VEL, stiffness=[2.0, 3.0],
                           damping=np.array([[0.5, 0.1], [0.1, 0.4]]), variance=0.2)
    x = np.array([0.3, 0.2, 0.7, -0.5, 9.0])
    kd = np.array([[0.5, 0.1], [0.1, 0.4]])
    expected = np.diag([2.0, 3.0]) @ (np.array([1.0, -1.0]) - x[:2]) - kd @ x[2:4]
    for t in (0, 3):
        np.testing.assert_allclose(c.act(t, x), expected, rtol=1e-12)
    np.testing.assert_allclose(c.pol_covar, np.broadcast_to(0.2 * np.eye(2), (4, 2, 2)))
    assert c.K.dtype == np.float64 and not c.K[:, :, 4].any()     # other state entries unused


@pytest.mark.parametrize("variance, expected", [
    (0.5, 0.5 * np.eye(2)),
    ([0.5, 2.0], np.diag([0.5, 2.0])),
    ([[1.0, 0.2], [0.2, 1.0]], np.array([[1.0, 0.2], [0.2, 1.0]])),
])
def test_variance_as_scalar_vector_or_matrix(variance, expected):
    c = joint_feedback_controller(3, 5, POS, VEL, np.zeros((2, 2)), np.zeros((2, 2)), [0, 0], variance)
    np.testing.assert_allclose(c.pol_covar[1], expected)


@pytest.mark.parametrize("variance", [0.0, [1.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]])
def test_variance_must_be_positive_definite(variance):
    with pytest.raises(ValueError, match="^initial controller variance must be positive definite$"):
        joint_feedback_controller(3, 5, POS, VEL, np.zeros((2, 2)), np.zeros((2, 2)), [0, 0], variance)


@pytest.mark.parametrize("kw, name", [({"stiffness": [1.0, 2.0, 3.0]}, "stiffness"),
                                      ({"damping": np.ones((3, 3))}, "damping"),
                                      ({"variance": np.ones((2, 3))}, "variance")])
def test_gains_of_the_wrong_shape_name_the_setting(kw, name):
    args = {"stiffness": 1.0, "damping": 1.0, "variance": 1.0, **kw}
    shape = ", ".join(str(n) for n in np.shape(kw[name])) + ("," if np.ndim(kw[name]) == 1 else "")
    with pytest.raises(ValueError, match=rf"^{name} must be a scalar, \(2,\) or \(2, 2\); got "
                                         rf"\({shape}\)$"):
        pd_hold_controller(3, 5, [0.0, 0.0], POS, VEL, **args)
