"""sampler_node: runs a local controller or the policy at joint rate and records the trial.

Interfaces (relative names; one sampler per namespace):
  action run_trial               gps_msgs/action/RunTrial (one trial per goal; cancel -> hold)
  sub    joint_states            sensor_msgs/JointState (the safety watchdog's clock)
  sub    gps_state               std_msgs/Float64MultiArray (state_source: gps_state, from sim_node)
  sub    camera/image_raw        sensor_msgs/Image (goals with record_images / policies)
  sub    e_stop                  std_msgs/Bool (True latches the e-stop)
  srv    reset_e_stop            std_srvs/Trigger (explicit operator reset)
  pub    <controller>/commands   std_msgs/Float64MultiArray (every command through the SafetyFilter)
  client reset                   gps_msgs/srv/ResetCondition (sim; "" on a real robot)

Timing: ``lockstep: true`` computes one command per new state (sim_node advances one period per
command).  ``lockstep: false`` (real robot) runs at ``rate_hz`` (default 20, designed for 500) on a
monotonic :class:`RateKeeper`, always with the newest joint state; overruns are counted and
reported in the feedback.  Each trial is written to ``experiment_dir``/trials when given.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from gps_ros.ros.common import (DEFAULT_JOINTS, SAFETY_PARAMS, load_experiment_config,
                                safety_from_params, spin_node)

_CLASS = None


class FKState:
    """Full GPS state from joint states on a real robot: PyBullet kinematics of the same URDF
    (never stepped): q, qd -> [q, qd, EE points - targets, EE point velocities]."""

    def __init__(self, sim) -> None:
        import pybullet as p

        self.sim, self._p = sim, p

    def reset(self, condition: int) -> None:
        self.sim.reset(condition)

    def __call__(self, q, qd) -> np.ndarray:
        p, sim = self._p, self.sim
        for j, (a, b) in enumerate(zip(q, qd if qd is not None else np.zeros_like(q))):
            p.resetJointState(sim.robot, j, float(a), float(b), physicsClientId=sim.physics_client)
        return sim.state()


def _define():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from gps_msgs.action import RunTrial
    from gps_msgs.srv import ResetCondition
    from rclpy.action import ActionServer, CancelResponse, GoalResponse
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Bool, Float64MultiArray
    from std_srvs.srv import Trigger

    from gps_ros.ros import convert
    from gps_ros.ros.clients import wait_future
    from gps_ros.ros.trial import TrialRecorder, actor_from_goal, goal_noise
    from gps_ros.safety import JointStateSample, RateKeeper
    from gps_ros.sample import Trajectories

    class SamplerNode(Node):
        def __init__(self):
            super().__init__("sampler_node")
            self.declare_parameter("config", "")
            self.declare_parameter("controller", "effort_controller")
            self.declare_parameter("joint_names", DEFAULT_JOINTS)
            self.declare_parameter("rate_hz", 20.0)
            self.declare_parameter("lockstep", True)
            self.declare_parameter("state_source", "gps_state")   # gps_state | fk | joint_states
            self.declare_parameter("reset_service", "reset")      # "" on a real robot
            self.declare_parameter("settle_time", 2.0)            # s to wait after a reset
            self.declare_parameter("experiment_dir", "")
            self.declare_parameter("feedback_every", 10)
            for k, v in SAFETY_PARAMS.items():
                self.declare_parameter(k, v)
            gp = lambda k: self.get_parameter(k).value  # noqa: E731
            self.cfg = load_experiment_config(gp("config"))
            self.joints = list(gp("joint_names"))
            self.rate_hz = float(gp("rate_hz"))
            self.lockstep = bool(gp("lockstep"))
            self.state_source = gp("state_source")
            self.settle_time = float(gp("settle_time"))
            self.experiment_dir = gp("experiment_dir")
            self.feedback_every = max(1, int(gp("feedback_every")))
            self.safety = safety_from_params(
                gp("robot_description"), self.joints, gp("command_mode"), self.rate_hz,
                gp("stale_periods"), gp("position_margin"), gp("hold_damping"), gp("brake_gain"),
                gp("effort_scale"), gp("velocity_scale"))
            self.order = convert.JointOrder(self.joints)
            self.fk = None
            self.model = None
            if self.state_source in ("fk", "gps_state"):
                from gps_ros.sim.panda import PandaReachSim

                self.model = PandaReachSim(self.cfg.agent)   # kinematics + state layout only
                self.fk = FKState(self.model) if self.state_source == "fk" else None
            self.dX = self.model.dX if self.model is not None else 2 * len(self.joints)
            lay = self.model.layout if self.model is not None else None
            self.joint_idx = (np.r_[lay.joint_pos.start:lay.joint_pos.stop, lay.joint_vel.start:lay.joint_vel.stop]
                              if lay is not None else np.arange(2 * len(self.joints)))

            self._cond = threading.Condition()
            self._js = None          # latest JointStateSample
            self._x = None           # latest full state
            self._seq = 0            # increments with every new state
            self._image = None
            self._busy = False

            sensors = ReentrantCallbackGroup()
            self.command_pub = self.create_publisher(
                Float64MultiArray, f"{gp('controller')}/commands", 10)
            self.joint_sub = self.create_subscription(JointState, "joint_states", self.joint_state_callback,
                                                      qos_profile_sensor_data if not self.lockstep else 10,
                                                      callback_group=sensors)
            self.state_sub = (self.create_subscription(Float64MultiArray, "gps_state", self.state_callback,
                                                       10, callback_group=sensors)
                              if self.state_source == "gps_state" else None)
            self.image_sub = self.create_subscription(Image, "camera/image_raw", self.image_callback,
                                                      qos_profile_sensor_data, callback_group=sensors)
            self.e_stop_sub = self.create_subscription(Bool, "e_stop", self.e_stop_callback, 10,
                                                       callback_group=sensors)
            self.reset_e_stop_srv = self.create_service(Trigger, "reset_e_stop", self.reset_e_stop_callback)
            rs = gp("reset_service")
            self.reset_client = (self.create_client(ResetCondition, rs,
                                                    callback_group=MutuallyExclusiveCallbackGroup())
                                 if rs else None)
            self.action_server = ActionServer(
                self, RunTrial, "run_trial", execute_callback=self.execute_callback,
                goal_callback=self.goal_callback, cancel_callback=self.cancel_callback,
                callback_group=ReentrantCallbackGroup())
            self.get_logger().info(
                f"sampler_node: {'lockstep' if self.lockstep else f'{self.rate_hz:g} Hz'}, "
                f"{self.safety.mode} commands on {gp('controller')}/commands, state from {self.state_source}")

        # --- sensors ------------------------------------------------------------------------
        def now(self) -> float:
            return self.get_clock().now().nanoseconds * 1e-9

        def joint_state_callback(self, msg):
            try:
                q, qd = self.order.extract(msg)
            except convert.ShapeError as err:
                self.get_logger().error(str(err), throttle_duration_sec=1.0)
                return
            stamp = convert.time_to_seconds(msg.header.stamp) or self.now()
            js = JointStateSample(q, qd, stamp)
            with self._cond:
                self._js = js
                if self.state_source != "gps_state":
                    self._x = self.fk(q, qd) if self.fk is not None else np.concatenate(
                        [q, qd if qd is not None else np.zeros_like(q)])
                    self._seq += 1
                    self._cond.notify_all()

        def state_callback(self, msg):
            x = np.asarray(msg.data, dtype=np.float64)
            with self._cond:
                self._x = x
                self._seq += 1
                self._cond.notify_all()

        def image_callback(self, msg):
            try:
                self._image = convert.image_from_msg(msg)
            except convert.ShapeError as err:
                self.get_logger().error(str(err), throttle_duration_sec=1.0)

        def e_stop_callback(self, msg):
            if msg.data:
                self.safety.e_stop("e_stop topic")
                self.publish(self.safety.hold(None))
                self.get_logger().error("E-STOP latched: holding; call reset_e_stop to clear")

        def reset_e_stop_callback(self, request, response):
            self.safety.reset_e_stop()
            response.success, response.message = True, "e-stop reset"
            self.get_logger().warning("e-stop reset by service call")
            return response

        def publish(self, u):
            self.command_pub.publish(convert.command_to_msg(u, Float64MultiArray()))

        # --- action -----------------------------------------------------------------------------
        def goal_callback(self, goal):
            if self._busy:
                return GoalResponse.REJECT                 # one trial at a time per robot
            if self.safety.e_stopped:
                self.get_logger().error("rejecting trial: e-stop latched")
                return GoalResponse.REJECT
            return GoalResponse.ACCEPT

        def cancel_callback(self, goal_handle):
            return CancelResponse.ACCEPT

        def wait_state(self, after_seq: int, timeout: float):
            with self._cond:
                self._cond.wait_for(lambda: self._seq > after_seq, timeout)
                return self._seq, self._x, self._js

        def reset_robot(self, condition: int):
            if self.fk is not None:
                self.fk.reset(condition)
            if self.reset_client is None:
                time.sleep(self.settle_time)              # the operator / robot program resets
                return
            if not self.reset_client.wait_for_service(timeout_sec=10.0):
                raise RuntimeError("reset service not available")
            req = ResetCondition.Request()
            req.condition = condition
            res = wait_future(self.reset_client.call_async(req), 30.0, "reset")
            if not res.success:
                raise RuntimeError(f"reset failed: {res.message}")

        def execute_callback(self, goal_handle):
            self._busy = True
            try:
                return self._run(goal_handle)
            finally:
                self._busy = False

        def _run(self, goal_handle):
            goal = goal_handle.request
            result = RunTrial.Result()
            feedback = RunTrial.Feedback()
            try:
                actor, source, T, dU = actor_from_goal(goal, joint_idx=self.joint_idx)
                noise = goal_noise(goal, T, dU)
            except Exception as err:  # noqa: BLE001
                self.get_logger().error(f"bad RunTrial goal: {err}")
                goal_handle.abort()
                return result
            rec = TrialRecorder(actor, int(goal.condition), T, self.dX, dU, noise, self.safety,
                                seed=int(goal.noise_seed), source=source,
                                record_images=bool(goal.record_images))
            seq = self._seq
            try:
                self.reset_robot(int(goal.condition))
            except Exception as err:  # noqa: BLE001
                rec.abort(f"reset failed: {err}")
            period = 1.0 / self.rate_hz
            max_wait = self.safety.max_age
            rate = RateKeeper(self.rate_hz)
            while not rec.done:
                if goal_handle.is_cancel_requested:
                    self.safety.cancel("trial cancelled by the client")
                if self.lockstep:
                    seq, x, js = self.wait_state(seq, max(max_wait, 10 * period))
                else:
                    rate.sleep()
                    seq, x, js = self._seq, self._x, self._js
                if x is None:
                    x = np.zeros(self.dX)
                img = self._image if goal.record_images or getattr(actor, "needs_image", False) else None
                u, status = rec.step(x, js, self.now(), img)
                self.publish(u)
                if status.stopped and self.safety.cancelled:
                    rec.abort(status.reason)
                    break
                if rec.t % self.feedback_every == 0 or rec.done:
                    feedback.step, feedback.horizon, feedback.overruns = rec.t, T, rate.overruns
                    goal_handle.publish_feedback(feedback)
            self.publish(self.safety.hold(self._js))
            image_dir = Path(self.experiment_dir) / "trials" / "images" if self.experiment_dir else None
            rec.result(result.trajectory, convert.ros_types(), image_dir=image_dir)
            result.trajectory.header.stamp = self.get_clock().now().to_msg()
            self.save(rec)
            if self.safety.cancelled:
                goal_handle.canceled()
            else:
                goal_handle.succeed()
            if rec.meta.discarded:
                self.get_logger().warning(f"trial discarded: {rec.meta.reason}")
            return result

        def save(self, rec):
            if not self.experiment_dir:
                return
            d = Path(self.experiment_dir) / "trials" / self.get_namespace().strip("/").replace("/", "_")
            d.mkdir(parents=True, exist_ok=True)
            tr = Trajectories(rec.X[None], rec.U[None], [rec.meta])
            tr.save(d / f"c{rec.meta.condition}_{time.time_ns()}.npz")

        def close(self):
            self.publish(self.safety.hold(None))
            if self.model is not None:
                self.model.close()

    _CLASS = SamplerNode
    return SamplerNode


def main(args=None):
    spin_node(lambda: _define()(), args, threads=4)


if __name__ == "__main__":
    main()
