"""A robot that does not move is detected and stops training; a trial can be stopped mid-way."""
from conftest import sim_limits
import numpy as np
import pytest

from gps_ros.agents import SimAgent
from gps_ros.ros import convert
from gps_ros.ros.convert import PlainTypes as P
from gps_ros.ros.proxies import RobotNotResponding, RosSampler
from gps_ros.ros.trial import (NO_RESPONSE, TrialRecorder, actor_from_goal, check_response,
                               goal_noise, run_embedded)
from gps_ros.safety import SafetyFilter
from gps_ros.sample import TrialMeta
from gps_ros.train import build_algorithm

JP = np.arange(7)


def test_check_response():
    T = 20
    X = np.zeros((T, 14))
    U = np.ones((T, 7))
    assert check_response(X, U, JP).startswith(NO_RESPONSE)         # pushed, never moved
    X[:, 3] = np.linspace(0, 0.01, T)
    assert check_response(X, U, JP) == ""                           # moved 10 mrad
    assert check_response(np.zeros((T, 14)), np.zeros((T, 7)), JP) == ""   # nothing sent
    assert check_response(X * 0.05, U, JP, min_motion=1e-3).startswith(NO_RESPONSE)  # 0.5 mrad


def test_free_running_robot_without_commands_is_caught(small_cfg):
    """The measured failure: commands published where no controller listens, the arm sits still
    (joint states keep coming) -> every trial 'valid'.  Now the sampler's check marks it and the
    coordinator's sampler stops the run at the first such trial."""
    with SimAgent(small_cfg.agent) as agent:
        ctrl = build_algorithm(small_cfg, agent).conditions[0].controller
        x0 = agent.sim.reset(0)
        T = ctrl.T
        X = np.repeat(x0[None], T, axis=0)                   # the arm never moved
        noise = np.random.default_rng(0).standard_normal((T, ctrl.dU))
        U = np.stack([ctrl.act(t, x0, noise[t]) for t in range(T)])
        reason = check_response(X, U, np.r_[agent.layout.joint_pos])
        assert reason.startswith(NO_RESPONSE)
        meta = TrialMeta(condition=0, seed=1, discarded=True, reason=reason)

        def transport(goal):
            return convert.trial_to_msg(X, U, meta, P.Trajectory(), P)

        with pytest.raises(RobotNotResponding, match="did not respond"):
            RosSampler([transport]).sample(ctrl, 0, np.zeros((2, T, ctrl.dU)), seeds=[1, 2])
        # a real trial of the same controller moves
        tr = agent.sample(ctrl, 0, noise[None])
        assert check_response(tr.X[0], tr.U[0], np.r_[agent.layout.joint_pos]) == ""


def test_run_embedded_stops_when_asked(small_cfg):
    with SimAgent(small_cfg.agent) as agent:
        ctrl = build_algorithm(small_cfg, agent).conditions[0].controller
        goal = convert.run_trial_goal(P.RunTrialGoal(), 0, ctrl.T, None, 3, controller=ctrl)
        actor, _, T, dU = actor_from_goal(goal)
        filt = SafetyFilter(sim_limits(), control_period=agent.sim.dt)
        rec = TrialRecorder(actor, 0, T, agent.dX, dU, goal_noise(goal, T, dU), filt)
        steps = []
        lay = agent.layout
        run_embedded(rec, agent.sim, 0, lay.joint_pos, lay.joint_vel,
                     should_stop=lambda: len(steps) >= 5, on_step=lambda t, x: steps.append(t))
        assert rec.done and rec.meta.discarded and "stopped" in rec.meta.reason
        assert steps == [1, 2, 3, 4, 5]
        assert np.all(rec.U[5:] == 0.0)


def test_ros_stages_pickle_without_generated_message_classes(monkeypatch):
    """A ROS-trained run's state.pkl must load where gps_msgs is absent (gps-ros export / eval on
    a laptop): the proxies drop their message classes and transports when pickled."""
    import pickle
    import sys
    import types as pytypes

    from gps_ros.ros.proxies import RosDynamicsFitter, RosPolicyStage

    fake = pytypes.ModuleType("fake_gps_msgs")

    class RosTypes:            # stands in for convert.ros_types(): generated classes
        pass

    RosTypes.__module__ = "fake_gps_msgs"
    fake.RosTypes = RosTypes
    monkeypatch.setitem(sys.modules, "fake_gps_msgs", fake)
    fitter = RosDynamicsFitter(lambda req: None, RosTypes, RosTypes)
    stage = RosPolicyStage(lambda goal: None, np.arange(14), "/tmp/x", RosTypes, RosTypes)
    blob = pickle.dumps((fitter, stage))
    monkeypatch.delitem(sys.modules, "fake_gps_msgs")
    f2, s2 = pickle.loads(blob)
    assert f2.types is P and f2.call is None
    assert s2.types is P and s2._train is None and s2.checkpoint_dir == "/tmp/x"


def test_stop_signal_reaches_a_blocked_main_thread():
    """An interrupt Python swallowed (raised inside a __del__) must still stop a coordinator that
    waits for a service: waits poll the STOP flag the signal handler sets (main thread only)."""
    import threading

    from gps_ros.ros import common
    from gps_ros.ros.clients import wait_future

    class NeverDone:
        def add_done_callback(self, cb):
            pass

        def cancel(self):
            pass

    common.STOP.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            wait_future(NeverDone(), 5.0, "fit_dynamics")
        errors = []

        def worker():                      # executor / dispatch threads are not interrupted
            try:
                wait_future(NeverDone(), 0.3, "run_trial")
            except BaseException as err:  # noqa: BLE001
                errors.append(type(err).__name__)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert errors == ["TimeoutError"]
    finally:
        common.STOP.clear()


def test_a_stale_camera_frame_holds_and_discards_a_vision_trial():
    """The sampler's control step with camera frames: fresh frames act; a frame older than the
    filter's max_image_age (or none) holds with the reason and the trial is discarded."""
    from gps_ros.safety import JointStateSample

    class SeeingActor:
        needs_image = True

        def act(self, t, x, noise=None, image=None):
            return np.full(7, 1.0)

    lim = sim_limits()
    f = SafetyFilter(lim, control_period=0.05, hold_damping=0.0, max_image_age=0.1)
    rec = TrialRecorder(SeeingActor(), 0, 4, 14, 7, np.zeros((4, 7)), f)
    q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785])         # inside the soft limits
    js = JointStateSample(q, np.zeros(7), 1.0)
    img = np.zeros((8, 8, 3), np.uint8)
    u, st = rec.step(np.zeros(14), js, 1.0, img, image_age=0.03)
    assert st.ok and np.allclose(u, 1.0)
    u, st = rec.step(np.zeros(14), js, 1.0, img, image_age=0.3)
    assert st.stopped and np.allclose(u, 0.0)
    assert rec.meta.discarded and "camera frame is 300 ms older" in rec.meta.reason
    rec2 = TrialRecorder(SeeingActor(), 0, 2, 14, 7, np.zeros((2, 7)), f)
    u, st = rec2.step(np.zeros(14), js, 1.0, None, image_age=float("inf"))
    assert st.stopped and "no camera frame" in rec2.meta.reason


def test_a_sim_on_another_host_is_named():
    from gps_ros.ros.trial import sim_host_warning

    assert sim_host_warning("robot-pc", "robot-pc", "/sampler_0/reset") == ""
    assert sim_host_warning("", "robot-pc", "/sampler_0/reset") == ""       # an older sim
    w = sim_host_warning("learner", "robot-pc", "/sampler_0/reset")
    assert "runs on host 'learner', this sampler on 'robot-pc'" in w and "role:=samplers" in w
