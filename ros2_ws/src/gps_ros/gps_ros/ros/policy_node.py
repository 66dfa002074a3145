"""policy_node: deployment.  Runs the exported visuomotor policy at joint rate on camera + joint
state and publishes commands through the same SafetyFilter as the sampler.

  sub joint_states            sensor_msgs/JointState (each message, or every ``decimation``-th,
                              triggers one control step)
  sub camera/image_raw        sensor_msgs/Image
  sub e_stop                  std_msgs/Bool;  srv ~/reset_e_stop  std_srvs/Trigger
  srv ~/enable                std_srvs/SetBool (starts disabled = holding; True runs the policy),
                              e.g. /policy_node/enable
  pub <controller>/commands   std_msgs/Float64MultiArray

A vision policy without camera frames holds the arm and says so (it never acts blind).
"""
from __future__ import annotations

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from gps_ros.ros import convert
from gps_ros.ros.common import (DEFAULT_JOINTS, SAFETY_PARAMS, declare_parameters, run_node,
                                safety_from_node)
from gps_ros.ros.trial import TorchScriptPolicyActor
from gps_ros.safety import JointStateSample

PARAMS = {
    "checkpoint": "",                 # TorchScript export (policy.pt / policy_NNNN.pt)
    "controller": "effort_controller",
    "joint_names": DEFAULT_JOINTS,
    "rate_hz": 20.0,                  # nominal, for the watchdog
    "decimation": 1,
    "enabled": False,
    **SAFETY_PARAMS,
}


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy_node")
        p = declare_parameters(self, PARAMS)
        if not p.checkpoint:
            raise ValueError("policy_node needs the parameter checkpoint (a TorchScript export)")
        self.joints = list(p.joint_names)
        n = len(self.joints)
        self.actor = TorchScriptPolicyActor(p.checkpoint, np.arange(2 * n))
        self.safety = safety_from_node(p, self.joints, float(p.rate_hz))
        self.order = convert.JointOrder(self.joints)
        self.decimation = max(1, int(p.decimation))
        self.enabled = bool(p.enabled)
        if self.enabled:
            self.safety.begin_trial()
        self.count = 0
        self.image = None
        self.command_pub = self.create_publisher(Float64MultiArray, f"{p.controller}/commands", 10)
        self.joint_sub = self.create_subscription(JointState, "joint_states", self.joint_state_callback,
                                                  qos_profile_sensor_data)
        self.image_sub = self.create_subscription(Image, "camera/image_raw", self.image_callback,
                                                  qos_profile_sensor_data)
        self.e_stop_sub = self.create_subscription(Bool, "e_stop", self.e_stop_callback, 10)
        self.reset_srv = self.create_service(Trigger, "~/reset_e_stop", self.reset_e_stop_callback)
        self.enable_srv = self.create_service(SetBool, "~/enable", self.enable_callback)
        self.get_logger().info(
            f"{p.checkpoint} -> {self.command_pub.topic_name} "
            f"({'enabled' if self.enabled else 'holding until ' + self.enable_srv.srv_name + ' true'})")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def image_callback(self, msg):
        try:
            self.image = convert.image_from_msg(msg)
        except convert.ShapeError as err:
            self.get_logger().error(str(err), throttle_duration_sec=1.0)

    def joint_state_callback(self, msg):
        self.count += 1
        if self.count % self.decimation:
            return
        try:
            q, qd = self.order.extract(msg)
        except convert.ShapeError as err:
            self.get_logger().error(str(err), throttle_duration_sec=1.0)
            return
        if qd is None:
            qd = np.zeros_like(q)
        stamp = convert.time_to_seconds(msg.header.stamp) or self.now()
        js = JointStateSample(q, qd, stamp)
        if not self.enabled:
            self.safety.cancel("policy not enabled")
        if self.actor.needs_image and self.image is None:
            raw = np.full(len(self.joints), np.nan)          # refuse to act blind
            if self.enabled:
                self.get_logger().warning(
                    f"no camera frames on {self.image_sub.topic_name}: holding (a vision policy "
                    "never acts blind)", throttle_duration_sec=2.0)
        else:
            raw = self.actor.act(0, np.concatenate([q, qd]), None, image=self.image)
        u, status = self.safety.filter(raw, js, self.now())
        if status.stopped and status.code != "cancelled" and self.image is not None:
            self.get_logger().warning(status.reason, throttle_duration_sec=1.0)
        self.command_pub.publish(convert.command_to_msg(u, Float64MultiArray()))

    def enable_callback(self, request, response):
        self.enabled = bool(request.data)
        if self.enabled:
            self.safety.begin_trial()
        else:
            self.safety.cancel("policy disabled")
        response.success, response.message = True, "enabled" if self.enabled else "holding"
        self.get_logger().info(f"policy {response.message}")
        return response

    def e_stop_callback(self, msg):
        if msg.data:
            self.safety.e_stop("e_stop topic")
            self.get_logger().error("E-STOP latched; call ~/reset_e_stop to clear")

    def reset_e_stop_callback(self, request, response):
        self.safety.reset_e_stop()
        response.success, response.message = True, "e-stop reset"
        return response

    def stop(self):
        """On the way out (context still valid): one hold command."""
        self.enabled = False
        if rclpy.ok(context=self.context):
            self.command_pub.publish(convert.command_to_msg(self.safety.hold(None),
                                                            Float64MultiArray()))


def main(args=None):
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
