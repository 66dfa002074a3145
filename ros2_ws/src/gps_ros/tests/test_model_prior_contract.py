"""The contracts of gps_ros.dynamics.model_prior below the robot-level tests: the joint step of each
command interface against its closed form and central differences (with a hand-made rigid body
for effort), the residual buffer, the floor and the single-point path of the NIW prior, the
settings and the URDF editors.  Each test names the bugs it catches (mutants of
bench/mutation_score.py)."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gps_ros.config import DynamicsConfig
from gps_ros.dynamics.model_prior import (ModelPrior, ModelStep, ResidualPriorGMM,
                                          niw_through_model, payload_urdf, scaled_inertia_urdf)

N = 3


def joint_step(command, **kw):
    """A ModelStep with its joint parameters set by hand (no robot model needed)."""
    s = ModelStep.__new__(ModelStep)
    s.command, s.n, s.dt, s.h, s.n_substeps = command, N, 0.05, 0.01, 5
    s.v_max = np.array([1.0, 2.0, 0.5])
    s.u_max = np.array([10.0, 5.0, 3.0])
    s.lower, s.upper = np.array([-1.0, -2.0, 0.0]), np.array([1.0, 2.0, 3.0])
    s.damping = np.array([0.5, 0.0, 1.0])
    s._fd_joints = False
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def fd_jacobian(s, q, v, u, eps=1e-6):
    z = np.concatenate([q, v, u], axis=1)
    D = np.empty((len(q), 2 * N, 3 * N))
    for k in range(3 * N):
        zp, zm = z.copy(), z.copy()
        zp[:, k] += eps
        zm[:, k] -= eps
        yp = np.concatenate(s._joint_step(zp[:, :N], zp[:, N:2 * N], zp[:, 2 * N:], False)[:2], 1)
        ym = np.concatenate(s._joint_step(zm[:, :N], zm[:, N:2 * N], zm[:, 2 * N:], False)[:2], 1)
        D[:, :, k] = (yp - ym) / (2 * eps)
    return D


STATES = (np.array([[0.1, -0.5, 1.0], [0.9, 1.9, 0.2]]), np.array([[0.2, 0.0, -0.1], [0.0, 0.3, 0.1]]))


def test_velocity_step_is_the_clipped_command_integrated():
    """v' = clip(u, ±v_max), q' = q + dt v'; Jacobians 0 / I where the clip is inactive."""
    s = joint_step("velocity")
    q, v = (np.vstack([a, a[:1]]) for a in STATES)
    u = np.array([[0.5, -3.0, 0.2], [-2.0, 1.0, 0.49], [3.0, 2.5, 0.7]])   # clipped both ways
    qn, vn, Dq, Dv = s._joint_step(q, v, u, True)
    vc = np.clip(u, -s.v_max, s.v_max)
    np.testing.assert_array_equal(vn, vc)
    np.testing.assert_allclose(qn, q + 0.05 * vc, rtol=1e-15)
    np.testing.assert_allclose(np.concatenate([Dq, Dv], 1), fd_jacobian(s, q, v, u), atol=1e-8)
    assert Dv[0, 1, 2 * N + 1] == 0.0 and Dv[0, 0, 2 * N] == 1.0
    assert s._joint_step(q, v, u, False)[2:] == (None, None)


def test_position_step_moves_to_the_clipped_target_at_capped_speed():
    """v' = clip((clip(u, lower, upper) - q) / dt, ±v_max), q' = q + dt v'."""
    s = joint_step("position")
    q, v = (np.vstack([a, a[:1]]) for a in STATES)
    q[2] = [0.0, 0.0, 0.01]
    u = np.array([[0.12, 5.0, 1.0], [0.5, 1.95, -1.0], [0.01, -0.01, -0.01]])   # beyond upper /
    # lower, far, near; row 3: joint 2 aims 1 cm below its lower limit from 1 cm above it
    qn, vn, Dq, Dv = s._joint_step(q, v, u, True)
    w = (np.clip(u, s.lower, s.upper) - q) / 0.05
    vc = np.clip(w, -s.v_max, s.v_max)
    np.testing.assert_allclose(vn, vc, rtol=1e-14)
    np.testing.assert_allclose(qn, q + 0.05 * vc, rtol=1e-14)
    np.testing.assert_allclose(np.concatenate([Dq, Dv], 1), fd_jacobian(s, q, v, u), atol=1e-7)
    assert s._joint_step(q, v, u, False)[2:] == (None, None)


class LinearBody:
    """A hand-made rigid body: a = Minv (tau - K q) (spring-loaded joints, constant mass)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        G = rng.standard_normal((N, N))
        self.Minv = np.linalg.inv(G @ G.T + N * np.eye(N))
        self.K = np.diag([3.0, 1.0, 2.0])

    def forward_dynamics(self, q, v, tau):
        return self.Minv @ (tau - self.K @ q)

    def forward_dynamics_derivatives(self, q, v, tau):
        return self.forward_dynamics(q, v, tau), -self.Minv @ self.K, np.zeros((N, N)), self.Minv


def effort_reference(s, q, v, u):
    q, v = q.copy(), v.copy()
    uc = np.clip(u, -s.u_max, s.u_max)
    for _ in range(s.n_substeps):
        a = (uc - s.damping * v - q @ s._dyn.K.T) @ s._dyn.Minv.T
        v = v + s.h * a
        q = q + s.h * v
    return q, v


def test_effort_step_is_semi_implicit_euler_with_damping_and_clipped_torques():
    """n_substeps of v += h a(q, v, clip(u) - d v), q += h v; the Jacobian (through the ABA
    derivatives, the damping and the clip) against central differences, and the same Jacobian
    from the central-difference fallback of continuous joints."""
    s = joint_step("effort", _dyn=LinearBody())
    q, v = STATES
    u = np.array([[4.0, -7.0, 1.0], [-12.0, 2.0, 3.5]])
    qn, vn, Dq, Dv = s._joint_step(q, v, u, True)
    qr, vr = effort_reference(s, q, v, u)
    np.testing.assert_allclose(qn, qr, rtol=1e-13)
    np.testing.assert_allclose(vn, vr, rtol=1e-13)
    D = np.concatenate([Dq, Dv], 1)
    np.testing.assert_allclose(D, fd_jacobian(s, q, v, u), atol=1e-8)
    assert np.all(D[0, :, 2 * N + 1] == 0.0) and np.all(D[1, :, 2 * N] == 0.0)   # clipped
    assert np.all(D[1, :, 2 * N + 2] == 0.0)
    s_fd = joint_step("effort", _dyn=LinearBody(), _fd_joints=True)
    qf, vf, Dqf, Dvf = s_fd._joint_step(q, v, u, True)
    np.testing.assert_array_equal(qf, qn)
    np.testing.assert_allclose(np.concatenate([Dqf, Dvf], 1), D, atol=1e-7)
    # large joint values: the difference step scales with |z| (1e-6 max(1, |z|))
    big = q + 1e4
    _, _, Dq_big, Dv_big = s_fd._joint_step(big, v, u, True)
    _, _, Dq_an, Dv_an = s._joint_step(big, v, u, True)
    np.testing.assert_allclose(Dv_big, Dv_an, atol=1e-4)
    assert s._joint_step(q, v, u, False)[2:] == (None, None)
    # the inputs are not changed in place
    q0, v0 = q.copy(), v.copy()
    s._joint_step(q, v, u, True)
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(v, v0)


# --- the prior -----------------------------------------------------------------------------------
class LinearStep:
    """f(z) = A z + c, exact J = A, counting its calls."""

    def __init__(self, dX=2, dU=1, seed=0):
        rng = np.random.default_rng(seed)
        self.A = np.hstack([np.eye(dX) + 0.1 * rng.standard_normal((dX, dX)),
                            rng.standard_normal((dX, dU))])
        self.c = 0.1 * rng.standard_normal(dX)
        self.calls = 0

    def __call__(self, X, U):
        self.calls += 1
        return np.concatenate([X, U], axis=-1) @ self.A.T + self.c

    def linearize(self, X, U):
        return self(X, U), np.broadcast_to(self.A, (len(X),) + self.A.shape).copy()


def trials(step, N=4, T=7, seed=1):
    rng = np.random.default_rng(seed)
    dX, dU = step.A.shape[0], step.A.shape[1] - step.A.shape[0]
    X = np.zeros((N, T, dX))
    U = rng.standard_normal((N, T, dU))
    X[:, 0] = rng.standard_normal((N, dX))
    for t in range(T - 1):
        X[:, t + 1] = step(X[:, t], U[:, t]) + 0.1 * np.tanh(X[:, t])
    return X, U


def test_settings_are_checked_and_reach_the_learned_prior():
    step = LinearStep()
    with pytest.raises(ValueError, match="the learned part of the model prior must be gmm or nn, "
                                         "not 'svm'"):
        ModelPrior(step, "svm")
    for kw in (dict(zz_floor=-1e-9), dict(zz_min=-1e-9)):
        with pytest.raises(ValueError, match="^zz_floor and zz_min must be >= 0$"):
            ModelPrior(step, **kw)
    p = ModelPrior(step, "gmm", dict(max_samples=3, strength=2.0), zz_floor=0.0, zz_min=0.0)
    assert isinstance(p.learned, ResidualPriorGMM) and p.learned.residual_fn is step
    assert (p.learned.max_samples, p.strength, p.zz_floor, p.zz_min) == (3, 2.0, 0.0, 0.0)
    cfg = DynamicsConfig(type="model_prior", prior=dict(max_samples=5))
    q = ModelPrior.from_config(cfg, step, seed=2)
    assert q.learned_kind == "gmm" and q.learned.max_samples == 5
    pytest.importorskip("torch")
    cfg = DynamicsConfig(type="model_prior", model_residual="nn", nn=dict(max_samples=6, hidden=[4]))
    r = ModelPrior.from_config(cfg, step, seed=2)
    assert r.learned_kind == "nn" and r.learned.max_samples == 6 and r.learned.seed == 2


def test_residuals_are_taken_when_trials_arrive_and_truncated_with_them():
    step = LinearStep()
    X, U = trials(step, N=5)
    p = ModelPrior(step, "gmm", dict(max_samples=3, min_samples_per_cluster=5))
    p.add_trials(X[:2], U[:2])
    calls = step.calls
    p.add_trials(X[2:], U[2:])
    assert step.calls == calls + 1                               # one batched call per add
    assert p.n_trials == 3 and len(p.learned._R) == 3
    R = X[4, 1:] - step(X[4, :-1], U[4, :-1])
    np.testing.assert_allclose(p.learned._R[-1], R, rtol=1e-12)
    data = p.learned.transition_data()
    np.testing.assert_allclose(data[-1], np.r_[X[4, -2], U[4, -2], R[-1]], rtol=1e-12)
    assert not p.fitted and p.zz_var is None
    p.refit()
    assert p.fitted and (p.dX, p.dU) == (2, 1)
    Z = np.concatenate([X[2:, :-1], U[2:, :-1]], axis=2).reshape(-1, 3)
    np.testing.assert_allclose(p.zz_var, Z.var(0), rtol=1e-12)
    np.testing.assert_allclose(p.initial_state()[0], X[2:, 0].mean(0))
    empty = ModelPrior(step)
    with pytest.raises(RuntimeError, match="^the prior's buffer is empty$"):
        empty.learned.transition_data()


def test_niw_prior_floor_and_single_point():
    """eval_batch maps the learned prior of the residual tuples through the model with the floor
    (zz_floor var_z + zz_min) x n0 on the (x, u) diagonal; a single point uses f(z̄) itself."""
    step = LinearStep()
    X, U = trials(step, N=6)
    kw = dict(min_samples_per_cluster=10, strength=2.0)
    p = ModelPrior(step, "gmm", kw, zz_floor=0.1, zz_min=0.01)
    p.update(X, U)
    P = np.concatenate([X[:, :-1], U[:, :-1], X[:, 1:]], axis=2).swapaxes(0, 1)
    mu0, Phi, m, n0 = p.eval_batch(2, 1, P)
    Z = P[..., :3]
    zbar = Z.mean(1)
    fbar, J = step.linearize(zbar[:, :2], zbar[:, 2:])
    Pr = np.concatenate([Z, P[..., 3:] - step(Z[..., :2].reshape(-1, 2),
                                              Z[..., 2:].reshape(-1, 1)).reshape(Z.shape[:2] + (2,))], 2)
    mr, Pr_, mm, nn = p.learned.eval_batch(2, 1, Pr)
    floor = 0.1 * p.zz_var + 0.01
    Pr_ = Pr_.copy()
    Pr_[:, np.arange(3), np.arange(3)] += 2.0 * floor
    mu_ref, Phi_ref = niw_through_model(mr, Pr_, fbar, J, zbar)
    np.testing.assert_allclose(mu0, mu_ref, rtol=1e-12)
    np.testing.assert_allclose(Phi, Phi_ref, rtol=1e-12)
    np.testing.assert_array_equal(m, [2.0] * len(P))
    np.testing.assert_array_equal(n0, m)
    # no floor: the plain mapping
    q = ModelPrior(step, "gmm", kw, zz_floor=0.0, zz_min=0.0)
    q.update(X, U)
    mr, Pr0, _, _ = q.learned.eval_batch(2, 1, Pr)
    np.testing.assert_allclose(q.eval_batch(2, 1, P)[1], niw_through_model(mr, Pr0, fbar, J, zbar)[1],
                               rtol=1e-12)
    for zz in (dict(zz_floor=0.0, zz_min=0.01), dict(zz_floor=0.1, zz_min=0.0)):
        r = ModelPrior(step, "gmm", kw, **zz)
        r.update(X, U)
        assert not np.allclose(r.eval_batch(2, 1, P)[1], q.eval_batch(2, 1, P)[1])
    # one point per step: the step's own f(z̄), no second model call
    calls = step.calls
    one = p.eval(2, 1, P[3][:1])
    assert step.calls == calls + 1
    ref = p.eval_batch(2, 1, np.concatenate([P[3][:1], P[3][:1]])[None])
    np.testing.assert_allclose(one[0], ref[0][0], rtol=1e-12)
    assert one[2:] == (2.0, 2.0) and isinstance(one[2], float)
    with pytest.raises(ValueError, match=r"tuples of shape \(2, 4\) for dX=2, dU=1"):
        p.eval_batch(2, 1, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"tuples of shape \(1, 2, 4\) for dX=2, dU=1"):
        p.eval_batch(2, 1, np.zeros((1, 2, 4)))


def test_the_network_residual_linearises_the_residual():
    torch = pytest.importorskip("torch")  # noqa: F841
    from gps_ros.dynamics.nn_prior import DynamicsPriorNN

    step = LinearStep()
    X, U = trials(step)
    p = ModelPrior(step, "nn", dict(hidden=[6], first_steps=20, steps=2, seed=0))
    p.update(X, U)
    z = np.concatenate([X[0, :3], U[0, :3]], axis=1)
    r, Jr = p.learned.linearize(z)
    x_next, Jx = DynamicsPriorNN.linearize(p.learned, z)
    np.testing.assert_allclose(r, x_next - z[:, :2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Jr[:, :, :2], Jx[:, :, :2] - np.eye(2), atol=1e-12)
    np.testing.assert_array_equal(Jr[:, :, 2:], Jx[:, :, 2:])
    Zp, Yp = p.learned._pairs()
    np.testing.assert_allclose(Yp[:6], X[0, :-1] + p.learned._R[0], rtol=1e-12)


def test_model_step_refuses_wrong_shapes(small_cfg):
    s = ModelStep(small_cfg.agent)
    dX, dU = s.task.dX, s.task.dU
    with pytest.raises(ValueError, match=rf"the model step needs X \(B, {dX}\) and U \(B, {dU}\); "
                                         rf"got \(1, 3\), \(1, {dU}\)"):
        s(np.zeros(3), np.zeros(dU))
    with pytest.raises(ValueError, match="the model step needs"):
        s(np.zeros((2, dX)), np.zeros((1, dU)))


URDF = """<robot name="r"><link name="a"><inertial><mass value="2.0"/>
<inertia ixx="1.0" ixy="0.5" ixz="0.2" iyy="3.0" iyz="0.4" izz="4.0"/></inertial></link>
<link name="b"><inertial><mass value="1.5"/></inertial></link><link name="c"/></robot>"""


def test_urdf_editors():
    root = ET.fromstring(scaled_inertia_urdf(URDF, 1.5))
    a, b = root.findall("link")[:2]
    assert float(a.find("inertial/mass").get("value")) == 3.0
    assert float(b.find("inertial/mass").get("value")) == 2.25
    ine = a.find("inertial/inertia")
    assert [float(ine.get(k)) for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")] == \
        [1.5, 0.75, 0.30000000000000004, 4.5, 0.6000000000000001, 6.0]
    root = ET.fromstring(payload_urdf(URDF, "c", 2.0, radius=0.1))
    body = [l for l in root.findall("link") if l.get("name") == "model_payload"][0]
    assert float(body.find("inertial/mass").get("value")) == 2.0
    i = 0.4 * 2.0 * 0.1 ** 2
    ine = body.find("inertial/inertia")
    assert [float(ine.get(k)) for k in ("ixx", "iyy", "izz", "ixy", "ixz", "iyz")] == \
        [i, i, i, 0.0, 0.0, 0.0]
    assert body.find("inertial/origin").attrib == dict(xyz="0 0 0", rpy="0 0 0")
    j = [j for j in root.findall("joint") if j.get("name") == "model_payload_joint"][0]
    assert j.get("type") == "fixed" and j.find("parent").get("link") == "c"
    assert j.find("child").get("link") == "model_payload"
    assert j.find("origin").attrib == dict(xyz="0 0 0", rpy="0 0 0")


def test_defaults_seeds_and_the_fitter():
    import inspect

    from gps_ros.dynamics.model_prior import model_fitter

    def defaults(f):
        return {k: v.default for k, v in inspect.signature(f).parameters.items()
                if v.default is not inspect.Parameter.empty}

    assert defaults(ModelPrior) == dict(learned="gmm", learned_kwargs=None, zz_floor=1e-2,
                                        zz_min=1e-4)
    assert defaults(ModelPrior.from_config) == dict(seed=0) == defaults(model_fitter)
    assert defaults(payload_urdf) == dict(radius=0.03)
    step = LinearStep()
    cfg = DynamicsConfig(type="model_prior", regularization=0.2)
    f = model_fitter(cfg, step, seed=7)
    assert f.regularization == 0.2 and f.prior.step is step and f.prior.learned.residual_fn is step
    assert f.prior.learned.gmm._rng.integers(1 << 30) == np.random.default_rng(7).integers(1 << 30)
    assert ModelPrior.from_config(cfg, step).learned.gmm._rng.integers(1 << 30) == \
        np.random.default_rng(0).integers(1 << 30)


def test_model_step_keeps_its_urdf_and_shares_a_given_task(small_cfg):
    import pickle

    from gps_ros.task import TaskModel

    task = TaskModel(small_cfg.agent)
    s = ModelStep(small_cfg.agent, task=task)
    assert s.task is task and s.urdf is None
    urdf = task.description.urdf
    t = pickle.loads(pickle.dumps(ModelStep(small_cfg.agent, urdf=urdf, task=task)))
    assert t.urdf == urdf and t._task is None and t._dyn is None
    x = np.zeros((1, task.dX))
    x[0, task.layout.joint_pos] = task.start_pose(0)
    u = np.zeros((1, task.dU))
    np.testing.assert_array_equal(t(x, u), s(x, u))
    assert s._fd_joints is False and s._dyn is not None
    np.testing.assert_array_equal(s.damping, np.broadcast_to(task.joint_damping, (task.n,)))
