"""Hostile messages (gps_ros.ros.validate), without ROS: what each node's checks refuse, that real
traffic passes (every shipped robot's first controllers; the whole in-process ROS loop runs them
in test_proxies.py), that a refusal is one line in the log and in the answer, and a fuzz of random
and adversarial messages: each is refused with :class:`Refused` or converts and runs."""
import array
import logging
from pathlib import Path

import numpy as np
import pytest

from gps_ros.config import load_config
from gps_ros.control.lin_gauss import LinearGaussianController
from gps_ros.ros import convert, proxies
from gps_ros.ros.clients import result_reason
from gps_ros.ros.convert import PlainTypes as P
from gps_ros.ros.sampler import refuse_trial
from gps_ros.ros.trial import TrialRecorder, actor_from_goal, goal_noise
from gps_ros.ros.validate import (BOUND_PARAMS, Bounds, Refused, brief, check_command,
                                  check_controller, check_optimize_request, check_run_trial_goal,
                                  check_state, check_trials, command_scale)
from gps_ros.safety import SafetyFilter, SafetyLimits
from gps_ros.sample import TrialMeta, Trajectories

CONFIGS = Path(__file__).resolve().parents[1] / "config"

# a 2-joint velocity robot, state [q, qd] (dX 4), T 10, 3 conditions
LIMITS = SafetyLimits(("a", "b"), [-1.0, -2.0], [1.0, 2.0], [2.0, 0.5], [10.0, 20.0])
T, DX, DU, M = 10, 4, 2, 3
B = Bounds(DX, DU, T, M, command_scale(LIMITS, "velocity"))


def controller(T=T, dX=DX, dU=DU, K=0.5, k=0.1, std=0.2):
    return LinearGaussianController(np.full((T, dU, dX), K), np.full((T, dU), k),
                                    np.tile(np.eye(dU) * std**2, (T, 1, 1)))


def goal(ctrl=None, condition=1, horizon=None, noise=None, **kw):
    ctrl = controller() if ctrl is None else ctrl
    g = convert.run_trial_goal(P.RunTrialGoal(), condition, ctrl.T, noise, 3, controller=ctrl)
    if horizon is not None:
        g.horizon = horizon
    for k, v in kw.items():
        setattr(g, k, v)
    return g


def policy_goal(chol=None, **kw):
    g = convert.run_trial_goal(P.RunTrialGoal(), 0, T, None, 3, policy_checkpoint="/x/policy.pt",
                               policy_chol=chol)
    for k, v in kw.items():
        setattr(g, k, v)
    return g


def refused(fn, *args, match: str):
    with pytest.raises(Refused, match=match) as err:
        fn(*args)
    msg = str(err.value)
    assert msg and "\n" not in msg and len(msg) < 400, msg
    return msg


# --- the scale and the bounds --------------------------------------------------------------------
def test_command_scale_is_the_limit_of_the_command_interface():
    np.testing.assert_array_equal(command_scale(LIMITS, "effort"), [10.0, 20.0])
    np.testing.assert_array_equal(command_scale(LIMITS, "velocity"), [2.0, 0.5])
    np.testing.assert_array_equal(command_scale(LIMITS, "position"), [2.0, 4.0])
    cont = SafetyLimits(("c",), [-np.inf], [np.inf], [1.0], [1.0])
    assert command_scale(cont, "position")[0] == pytest.approx(2 * np.pi)
    with pytest.raises(ValueError, match="torque"):
        command_scale(LIMITS, "torque")


@pytest.mark.parametrize("kw, match", [
    (dict(scale=[1.0]), "2 finite positive"), (dict(scale=[1.0, 0.0]), "2 finite positive"),
    (dict(scale=[1.0, np.inf]), "2 finite positive"), (dict(max_gain=0.0), "max_gain"),
    (dict(max_noise_std=np.nan), "max_noise_std"), (dict(horizon=0), "horizon"),
])
def test_bounds_refuse_nonsense(kw, match):
    args = {**dict(dX=DX, dU=DU, horizon=T, num_conditions=M, scale=[2.0, 0.5]), **kw}
    with pytest.raises(ValueError, match=match):
        Bounds(**args)


@pytest.mark.parametrize("name", ["panda_reach", "iiwa_reach", "ur5_reach", "so101_reach"])
def test_every_shipped_robots_first_controllers_and_goals_pass(name):
    """The initial controllers (the LQR plan or PD hold each config asks for) of every shipped
    robot pass its bounds, as goals too; ten times the gain or feed-forward bounds do not."""
    from gps_ros.task import TaskModel, build_initial_controllers

    cfg = load_config(CONFIGS / f"{name}.yaml")
    try:
        task = TaskModel(cfg.agent)
    except ImportError as err:                      # example-robot-data absent
        pytest.skip(str(err))
    b = Bounds.for_task(task, task.dX, cfg.agent.T, task.num_conditions)
    for m, c in enumerate(build_initial_controllers(cfg, task)):
        check_controller(c, b)
        noise = np.random.default_rng(m).standard_normal((c.T, c.dU))
        check_run_trial_goal(convert.run_trial_goal(P.RunTrialGoal(), m, c.T, noise, m,
                                                    controller=c), b)
    wild = LinearGaussianController(c.K * 0 + 10 * b.max_gain * b.scale[None, :, None], c.k,
                                    c.pol_covar)
    refused(check_controller, wild, b, match="max_gain")


def test_bounds_for_task_take_the_node_parameters():
    from types import SimpleNamespace

    from gps_ros.task import TaskModel

    cfg = load_config(CONFIGS / "panda_reach.yaml")
    task = TaskModel(cfg.agent)
    p = SimpleNamespace(**{**BOUND_PARAMS, "max_gain": 3.0, "other": 1})
    b = Bounds.for_task(task, task.dX, cfg.agent.T, task.num_conditions, p)
    assert b.max_gain == 3.0 and b.max_feedforward == BOUND_PARAMS["max_feedforward"]
    assert (b.dX, b.dU, b.horizon, b.num_conditions) == (task.dX, 7, cfg.agent.T, 4)
    np.testing.assert_array_equal(b.scale, task.description.limits().effort)


# --- RunTrial goals ------------------------------------------------------------------------------
def test_a_good_goal_passes_and_runs():
    g = goal(noise=np.random.default_rng(0).standard_normal((T, DU)))
    check_run_trial_goal(g, B)
    actor, source, t, du = actor_from_goal(g)
    assert (source, t, du) == ("controller", T, DU) and goal_noise(g, t, du).shape == (T, DU)
    check_run_trial_goal(policy_goal(np.diag([0.1, 0.05])), B)
    check_run_trial_goal(policy_goal(), B)                       # no noise factor: the export's


def test_controller_goal_refusals():
    assert "dX=5" in refused(check_run_trial_goal, goal(controller(dX=5)), B, match="dX=4, dU=2")
    refused(check_run_trial_goal, goal(controller(dU=3)), B, match="dU=3")
    refused(check_run_trial_goal, goal(controller(T=T + 1)), B, match="horizon 11 is outside 1..10")
    refused(check_run_trial_goal, goal(horizon=T - 1), B, match="horizon 9 != its controller's")
    refused(check_run_trial_goal, goal(condition=M), B, match="condition 3 is not one of .*0..2")
    refused(check_run_trial_goal, goal(source=7), B, match="source 7 is neither")
    refused(check_run_trial_goal, goal(policy_checkpoint="/x.pt"), B, match="carries a policy")
    # the gain bound is per joint, in the joint's command scale: 0.5 rad/s on joint b
    refused(check_run_trial_goal, goal(controller(K=B.max_gain * 0.5 * 1.01)), B,
            match=r"gain K\[0, 1, 0\] .* command scale 0.5 of joint 1 \(max_gain 1000\)")
    check_run_trial_goal(goal(controller(K=B.max_gain * 0.5 * 0.99)), B)
    refused(check_run_trial_goal, goal(controller(k=-B.max_feedforward)), B,
            match=r"feed-forward k\[0, 1\] = -1000")
    refused(check_run_trial_goal, goal(controller(std=B.max_noise_std * 0.5 * 1.01)), B,
            match="noise std .* of joint 1 .*max_noise_std 10")
    bad = goal()
    bad.controller.gain = array.array("d", [np.nan] * (T * DU * DX))
    refused(check_run_trial_goal, bad, B, match="finite")
    bad = goal()
    bad.controller.gain = array.array("d", [1.0] * 3)
    refused(check_run_trial_goal, bad, B, match="gain has 3 values")


def test_noise_refusals():
    refused(check_run_trial_goal, goal(noise=np.zeros((T - 1, DU))), B,
            match=r"noise has 18 values, expected T x dU = 10 x 2 = 20")
    n = np.zeros((T, DU))
    n[3, 1] = np.inf
    refused(check_run_trial_goal, goal(noise=n), B, match="NaN or inf")
    n[3, 1] = -11.0
    refused(check_run_trial_goal, goal(noise=n), B, match="11-sigma draw")


def test_policy_goal_refusals():
    refused(check_run_trial_goal, policy_goal(horizon=0), B, match="horizon 0 is outside")
    refused(check_run_trial_goal, policy_goal(horizon=2**32 - 1), B, match="horizon 4294967295")
    refused(check_run_trial_goal, policy_goal(policy_checkpoint=""), B, match="needs policy_checkpoint")
    refused(check_run_trial_goal, policy_goal(np.eye(3)), B, match="9 values, expected dU x dU = 4")
    refused(check_run_trial_goal, policy_goal(np.array([[1.0, 0.1], [0.0, 1.0]])), B,
            match="lower triangular")
    refused(check_run_trial_goal, policy_goal(np.diag([1.0, 0.0])), B, match="positive diagonal")
    refused(check_run_trial_goal, policy_goal(np.diag([1.0, 6.0])), B, match="noise std 6 of joint 1")


# --- commands, trials, the LQR request -----------------------------------------------------------
def test_commands_and_their_log_lines_are_short():
    assert check_command([0.1, -0.2], 2) is None
    assert "for 2 joints" in check_command([0.1], 2)
    assert "NaN or inf" in check_command([0.1, np.nan], 2)
    huge = array.array("d", range(1_000_000))
    why = check_command(huge, 2)
    assert len(why) < 120 and "(1000000 values)" in why
    assert brief([1, 2]) == "[1, 2] (2 values)" and brief(5) == "5"
    assert check_state([0.0] * DX, DX) is None and check_state([np.nan] * DX, DX) is None
    assert "the task's state has 4 values" in check_state([0.0] * 3, DX)


def trials(n=2, T=T, dX=DX, dU=DU, condition=0, **kw):
    rng = np.random.default_rng(0)
    tr = Trajectories(rng.standard_normal((n, T, dX)), rng.standard_normal((n, T, dU)),
                      [TrialMeta(condition, seed=i) for i in range(n)])
    msgs = convert.trajectories_to_msgs(tr, P)
    for m in msgs:
        for k, v in kw.items():
            setattr(m, k, v)
    return msgs


def test_trial_refusals(tmp_path):
    good = trials(condition=0) + trials(condition=2)
    check_trials(good, T, M)
    refused(check_trials, [], T, M, match="none given")
    refused(check_trials, trials(condition=M), T, M, match="trial 0 names condition 3")
    refused(check_trials, trials(T=T + 1), T, M, match="horizon 11, the task's is 10")
    refused(check_trials, trials() + trials(dX=DX + 1), T, M, match="trial 2 has dx=5")
    refused(check_trials, trials(du=0), T, M, match="dx=4, du=0")
    bad = trials()
    bad[1].states = array.array("d", [0.0] * 3)
    refused(check_trials, bad, T, M, match="trial 1 has 3 state")
    bad = trials()
    bad[0].actions[5] = np.nan
    refused(check_trials, bad, T, M, match=r"trial 0 \(kept\) holds NaN")
    bad[0].discarded = True                       # a stopped trial may end in a NaN state
    check_trials(bad, T, M)
    refused(check_trials, trials(image_paths=["/dev/zero"] * 2), T, M,
            match="'/dev/zero' is not a regular")
    (tmp_path / "f.png").write_bytes(b"")
    check_trials(trials(image_paths=[str(tmp_path / "f.png")]), T, M)
    refused(check_trials, trials(image_paths=[str(tmp_path)]), T, M, match="not a regular")
    refused(check_trials, trials(image_paths=["/etc/passwd"]), T, M, match="not a regular")
    refused(check_trials, trials(image_paths=[str(tmp_path / "f.png")] * (T + 1)), T, M,
            match="11 frames for 10 steps")


def lqr_inputs():
    from gps_ros.control import QuadraticCost
    from gps_ros.dynamics.linear_gaussian import LinearGaussianDynamics

    rng = np.random.default_rng(1)
    n = DX + DU
    dyn = LinearGaussianDynamics(rng.standard_normal((T, DX, n)) * 0.1, np.zeros((T, DX)),
                                 np.tile(np.eye(DX) * 1e-3, (T, 1, 1)), np.zeros(DX), np.eye(DX))
    A = rng.standard_normal((n, n))
    cost = QuadraticCost(np.tile(A + A.T, (T, 1, 1)), np.zeros((T, n)), np.zeros(T))
    return [dyn], [cost], [controller()], [1.0], [0.5]


def test_optimize_request_refusals():
    d, c, p, e, h = lqr_inputs()
    check_optimize_request(d, c, p, e, h, T)                  # an indefinite cost Hessian is fine
    refused(check_optimize_request, [], [], [], [], [], T, match="no conditions")
    refused(check_optimize_request, d, c, p, e, [], T, match="1 dynamics, 1 costs, 1 previous, "
            "1 epsilon, 0 eta0")
    refused(check_optimize_request, d, c, p, e, h, T + 1, match="horizon 10, the task's is 11")
    refused(check_optimize_request, d, c, [controller(dX=3)], e, h, T, match="previous controller")
    refused(check_optimize_request, d, c, p, [0.0], h, T, match="epsilon 0.0 must be finite and > 0")
    refused(check_optimize_request, d, c, p, e, [np.inf], T, match="eta0 inf")
    d[0].dyn_covar[4] = -d[0].dyn_covar[4]
    refused(check_optimize_request, d, c, p, e, h, T, match="dyn_covar is not symmetric positive")
    d, c, p, e, h = lqr_inputs()
    d[0].x0sigma[0, 1] = 0.5
    refused(check_optimize_request, d, c, p, e, h, T, match="x0sigma")
    d, c, p, e, h = lqr_inputs()
    c[0].Cm[2, 0, 1] += 1.0
    refused(check_optimize_request, d, c, p, e, h, T, match="cost cm is not finite and symmetric")
    d, c, p, e, h = lqr_inputs()
    d[0].Fm[0, 0, 0] = np.nan
    refused(check_optimize_request, d, c, p, e, h, T, match="Fm holds NaN")


# --- the answers: one line, the reason where the client reads it ---------------------------------
def test_a_refused_request_is_one_log_line_and_the_answer_says_why(caplog):
    st = proxies.plain_service_types()
    req = st.FitDynamicsRequest()
    req.trajectories, req.num_conditions = trials(condition=M), M
    caplog.set_level(logging.ERROR, logger="gps_ros.ros.proxies")
    res = proxies.handle_fit_dynamics(None, req, st.FitDynamicsResponse(), horizon=T, num_conditions=M)
    assert not res.success and "names condition 3" in res.message and res.dynamics == []
    req.num_conditions = 1
    res = proxies.handle_fit_dynamics(None, req, st.FitDynamicsResponse(), horizon=T, num_conditions=M)
    assert "fit_dynamics for 1 conditions, the task has 3" in res.message
    d, c, p, e, h = lqr_inputs()
    req = st.OptimizeRequest()
    req.dynamics = [convert.dynamics_to_msg(d[0], P.LinearGaussianDynamics())]
    req.costs = [convert.cost_to_msg(c[0], P.QuadraticCost())]
    req.previous = [convert.controller_to_msg(p[0], P.LinearGaussianController())]
    req.epsilon, req.eta0 = [-1.0], [0.0]
    res = proxies.handle_optimize(None, req, st.OptimizeResponse(), horizon=T)
    assert not res.success and "epsilon -1.0" in res.message
    goal = st.TrainGoal()
    goal.trajectories, goal.controllers = trials(), [controller()] * 2
    res = proxies.handle_train_policy(None, goal, st.TrainResult(), None, horizon=T,
                                      num_conditions=M)
    assert not res.success and "2 controllers, the task 3 conditions" in res.message
    goal.controllers = [convert.controller_to_msg(controller(T=5), P.LinearGaussianController())] * M
    res = proxies.handle_train_policy(None, goal, st.TrainResult(), None, horizon=T,
                                      num_conditions=M)
    assert "controller 0 is T=5, dx=4, du=2; the trials' T=10" in res.message
    assert len(caplog.records) == 5
    assert all(r.exc_info is None and "refused: " in r.getMessage() for r in caplog.records)


def test_a_refused_goal_answers_with_a_discarded_trial_that_says_why():
    msg = refuse_trial(P.Trajectory(), 2**40, "RunTrial goal refused: horizon 0")
    assert msg.discarded and msg.reason.endswith("horizon 0") and msg.horizon == 0
    assert msg.condition == 2**32 - 1
    res = type("Result", (), {"trajectory": msg})()
    assert result_reason(res) == "RunTrial goal refused: horizon 0"
    assert result_reason(type("Result", (), {"message": "bad trials"})()) == "bad trials"
    assert result_reason(object()) == ""


# --- fuzz: random and adversarial messages -------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False, width=64)
big = st.one_of(st.integers(0, 12), st.sampled_from([2**31, 2**32 - 1]))


def values(n):
    """n values: tame, extreme or non-finite."""
    return st.lists(st.one_of(st.floats(-2, 2, allow_subnormal=False), floats), min_size=n,
                    max_size=n)


def _set(obj, path, value):
    *head, last = path.split(".")
    for h in head:
        obj = getattr(obj, h)
    setattr(obj, last, value)


#: goal fields and what an adversary puts there (each fuzzed goal: a valid one, then up to three)
GOAL_FIELDS = {
    "source": big, "condition": big, "horizon": big, "noise_seed": st.integers(0, 2**64 - 1),
    "policy_checkpoint": st.sampled_from(["", "/nonexistent/policy.pt", "x" * 5000]),
    "controller.horizon": big, "controller.dx": big, "controller.du": big,
}
GOAL_ARRAYS = ("noise", "policy_covariance_cholesky", "controller.gain", "controller.bias",
               "controller.covariance_cholesky")


@st.composite
def hostile_goal(draw):
    """A valid goal for B (a controller or a policy), then up to three fields replaced: a number
    by a small, huge or boundary one; an array by one of another size or with extreme values."""
    T_ = draw(st.integers(1, T))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    noise = rng.standard_normal((T_, DU)) if draw(st.booleans()) else None
    if draw(st.booleans()):
        c = LinearGaussianController(rng.uniform(-5, 5, (T_, DU, DX)), rng.uniform(-5, 5, (T_, DU)),
                                     np.tile(np.diag(rng.uniform(0.01, 1.0, DU)), (T_, 1, 1)))
        g = convert.run_trial_goal(P.RunTrialGoal(), draw(st.integers(0, M - 1)), T_, noise, 1,
                                   controller=c)
    else:
        g = convert.run_trial_goal(P.RunTrialGoal(), draw(st.integers(0, M - 1)), T_, noise, 1,
                                   policy_checkpoint="/x/policy.pt",
                                   policy_chol=np.diag(rng.uniform(0.01, 1.0, DU)))
    for name in draw(st.lists(st.sampled_from(sorted(GOAL_FIELDS) + list(GOAL_ARRAYS)),
                              max_size=3, unique=True)):
        if name in GOAL_FIELDS:
            _set(g, name, draw(GOAL_FIELDS[name]))
            continue
        obj = g
        for h in name.split(".")[:-1]:
            obj = getattr(obj, h)
        old = list(getattr(obj, name.split(".")[-1]))
        if old and draw(st.booleans()):                 # same size, some values extreme
            for i in draw(st.lists(st.integers(0, len(old) - 1), min_size=1, max_size=3)):
                old[i] = draw(floats)
            new = old
        else:                                           # another size
            new = draw(values(draw(st.integers(0, 2 * len(old) + 3))))
        _set(g, name, array.array("d", new))
    return g


@FUZZ
@given(hostile_goal())
def test_fuzz_run_trial_goals_are_refused_in_one_line_or_run(g):
    """A goal the sampler takes is one it can run: its actor, noise and recorder build; a
    controller goal's first command through the safety filter is finite."""
    try:
        check_run_trial_goal(g, B)
    except Refused as err:
        assert str(err) and "\n" not in str(err)
        return
    if int(g.source) == P.RunTrialGoal.SOURCE_POLICY:
        chol = []
        actor, source, t, du = actor_from_goal(
            g, policy_loader=lambda path, ch: (chol.append(ch), type("A", (), {
                "config": {"action_dim": DU}})())[1])
        assert t <= T and du == DU
        return
    actor, source, t, du = actor_from_goal(g)
    assert (actor.dX, actor.dU) == (DX, DU) and 1 <= t <= T
    rec = TrialRecorder(actor, int(g.condition), t, DX, du, goal_noise(g, t, du),
                        SafetyFilter(LIMITS, mode="velocity", control_period=0.05))
    u = actor.act(0, np.zeros(DX), rec.noise[0])
    assert np.isfinite(u).all()


TRIAL_FIELDS = {
    "condition": big, "horizon": big, "dx": big, "du": big, "discarded": st.booleans(),
    "image_paths": st.sampled_from([["/dev/zero"], ["/etc/hostname"], ["../../x.png"],
                                    ["/nonexistent.png"] * (T + 1)]),
}


@st.composite
def hostile_trials(draw):
    """Valid trials of up to three conditions, then up to three fields of them replaced."""
    msgs = []
    for c in range(draw(st.integers(1, M))):
        msgs += trials(n=draw(st.integers(1, 2)), condition=c)
    for _ in range(draw(st.integers(0, 3))):
        m = msgs[draw(st.integers(0, len(msgs) - 1))]
        name = draw(st.sampled_from(sorted(TRIAL_FIELDS) + ["states", "actions"]))
        if name in TRIAL_FIELDS:
            setattr(m, name, draw(TRIAL_FIELDS[name]))
        else:
            old = list(getattr(m, name))
            if old and draw(st.booleans()):
                old[draw(st.integers(0, len(old) - 1))] = draw(floats)
            else:
                old = draw(values(draw(st.integers(0, 2 * len(old)))))
            setattr(m, name, array.array("d", old))
    return msgs


@FUZZ
@given(hostile_trials())
def test_fuzz_trials_are_refused_in_one_line_or_stack(msgs):
    try:
        check_trials(msgs, T, M)
    except Refused as err:
        assert str(err) and "\n" not in str(err)
        return
    for c in sorted({int(m.condition) for m in msgs}):
        tr = convert.msgs_to_trajectories([m for m in msgs if int(m.condition) == c])
        assert tr.X.shape[1] == T


def test_the_fuzz_reaches_both_answers():
    """The strategies are not all refusals (then the 'runs' half would test nothing)."""
    from hypothesis import find

    def passes(check, *args):
        try:
            check(*args)
        except Refused:
            return False
        return True

    for source in (P.RunTrialGoal.SOURCE_CONTROLLER, P.RunTrialGoal.SOURCE_POLICY):
        find(hostile_goal(), lambda g: g.source == source and passes(check_run_trial_goal, g, B),
             settings=FUZZ)
    find(hostile_goal(), lambda g: not passes(check_run_trial_goal, g, B), settings=FUZZ)
    find(hostile_trials(), lambda m: len(m) > 2 and passes(check_trials, m, T, M), settings=FUZZ)
    find(hostile_trials(), lambda m: not passes(check_trials, m, T, M), settings=FUZZ)
