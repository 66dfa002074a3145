"""policy_node: deployment.  Runs the exported visuomotor policy at joint rate on camera + joint
state and publishes commands through the same SafetyFilter as the sampler.

  sub joint_states            sensor_msgs/JointState (each message, or every ``decimation``-th,
                              triggers one control step)
  sub camera/image_raw        sensor_msgs/Image
  sub e_stop                  std_msgs/Bool;  srv reset_e_stop  std_srvs/Trigger
  srv enable                  std_srvs/SetBool (starts disabled = holding; True runs the policy)
  pub <controller>/commands   std_msgs/Float64MultiArray
"""
from __future__ import annotations

import numpy as np

from gps_ros.ros.common import DEFAULT_JOINTS, SAFETY_PARAMS, safety_from_params, spin_node

_CLASS = None


def _define():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Bool, Float64MultiArray
    from std_srvs.srv import SetBool, Trigger

    from gps_ros.ros import convert
    from gps_ros.ros.trial import TorchScriptPolicyActor
    from gps_ros.safety import JointStateSample

    class PolicyNode(Node):
        def __init__(self):
            super().__init__("policy_node")
            self.declare_parameter("checkpoint", "")          # TorchScript export (policy_NNNN.pt)
            self.declare_parameter("controller", "effort_controller")
            self.declare_parameter("joint_names", DEFAULT_JOINTS)
            self.declare_parameter("rate_hz", 20.0)           # nominal, for the watchdog
            self.declare_parameter("decimation", 1)
            self.declare_parameter("enabled", False)
            for k, v in SAFETY_PARAMS.items():
                self.declare_parameter(k, v)
            gp = lambda k: self.get_parameter(k).value  # noqa: E731
            if not gp("checkpoint"):
                raise ValueError("policy_node needs the parameter checkpoint (a TorchScript export)")
            self.joints = list(gp("joint_names"))
            n = len(self.joints)
            self.actor = TorchScriptPolicyActor(gp("checkpoint"), np.arange(2 * n))
            self.safety = safety_from_params(
                gp("robot_description"), self.joints, gp("command_mode"), float(gp("rate_hz")),
                gp("stale_periods"), gp("position_margin"), gp("hold_damping"), gp("brake_gain"),
                gp("effort_scale"), gp("velocity_scale"))
            self.order = convert.JointOrder(self.joints)
            self.decimation = max(1, int(gp("decimation")))
            self.enabled = bool(gp("enabled"))
            self.count = 0
            self.image = None
            self.command_pub = self.create_publisher(Float64MultiArray, f"{gp('controller')}/commands", 10)
            self.joint_sub = self.create_subscription(JointState, "joint_states", self.joint_state_callback,
                                                      qos_profile_sensor_data)
            self.image_sub = self.create_subscription(Image, "camera/image_raw", self.image_callback,
                                                      qos_profile_sensor_data)
            self.e_stop_sub = self.create_subscription(Bool, "e_stop", self.e_stop_callback, 10)
            self.reset_srv = self.create_service(Trigger, "reset_e_stop", self.reset_e_stop_callback)
            self.enable_srv = self.create_service(SetBool, "enable", self.enable_callback)
            self.get_logger().info(f"policy_node: {gp('checkpoint')} -> {gp('controller')}/commands "
                                   f"({'enabled' if self.enabled else 'holding until enable'})")

        def now(self) -> float:
            return self.get_clock().now().nanoseconds * 1e-9

        def image_callback(self, msg):
            self.image = convert.image_from_msg(msg)

        def joint_state_callback(self, msg):
            self.count += 1
            if self.count % self.decimation:
                return
            q, qd = self.order.extract(msg)
            if qd is None:
                qd = np.zeros_like(q)
            stamp = convert.time_to_seconds(msg.header.stamp) or self.now()
            js = JointStateSample(q, qd, stamp)
            if not self.enabled:
                self.safety.cancel("policy not enabled")
            raw = self.actor.act(0, np.concatenate([q, qd]), None, image=self.image)
            if self.actor.needs_image and self.image is None:
                raw = np.full_like(raw, np.nan)               # refuse to act blind
            u, status = self.safety.filter(raw, js, self.now())
            if status.stopped and status.code != "cancelled":
                self.get_logger().warning(status.reason, throttle_duration_sec=1.0)
            self.command_pub.publish(convert.command_to_msg(u, Float64MultiArray()))

        def enable_callback(self, request, response):
            self.enabled = bool(request.data)
            if self.enabled:
                self.safety.begin_trial()
            else:
                self.safety.cancel("policy disabled")
            response.success, response.message = True, "enabled" if self.enabled else "holding"
            return response

        def e_stop_callback(self, msg):
            if msg.data:
                self.safety.e_stop("e_stop topic")
                self.get_logger().error("E-STOP latched; call reset_e_stop to clear")

        def reset_e_stop_callback(self, request, response):
            self.safety.reset_e_stop()
            response.success, response.message = True, "e-stop reset"
            return response

        def close(self):
            self.command_pub.publish(convert.command_to_msg(self.safety.hold(None), Float64MultiArray()))

    _CLASS = PolicyNode
    return PolicyNode


def main(args=None):
    spin_node(lambda: _define()(), args, threads=1)


if __name__ == "__main__":
    main()
