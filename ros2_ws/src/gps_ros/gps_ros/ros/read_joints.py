"""Read the arm's current joint positions from one sensor_msgs/JointState message.

Used by ``gps-ros targets record`` when no ``--joints`` are given.  rclpy is imported inside
:func:`read_joint_positions` only, so importing this module needs no ROS; without ROS the call
raises ``ImportError`` (the CLI turns it into a one-line "source ROS 2 or pass --joints").

The function creates its own rclpy context and node (no global ``rclpy.init``, no signal
handlers: Ctrl-C is a plain KeyboardInterrupt), waits for the first message that carries every
requested joint (messages of other publishers on the same topic, e.g. the gripper's, are
skipped), and shuts everything down again before it returns or raises.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence, Tuple

import numpy as np

from gps_ros.ros.convert import JointOrder, ShapeError


class NoJointStates(TimeoutError):
    """No usable JointState message arrived in time."""


def read_joint_positions(topic: str, joint_names: Sequence[str],
                         timeout: float = 5.0) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(positions (n,), velocities (n,) or None) of ``joint_names`` (the robot's: the config's
    ``agent.robot.joints``), in that order, from the first suitable ``sensor_msgs/JointState`` on
    ``topic`` (e.g. ``/joint_states``).

    Raises :class:`NoJointStates` after ``timeout`` seconds (the message says whether the topic
    had a publisher at all and why messages were unusable) and ``ImportError`` without rclpy.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data  # best effort: matches reliable publishers too
    from rclpy.signals import (SignalHandlerOptions, get_current_signal_handlers_options,
                               uninstall_signal_handlers)
    from sensor_msgs.msg import JointState

    order = JointOrder(joint_names)
    handlers_before = get_current_signal_handlers_options()
    context = rclpy.Context()
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = None
    got: dict = {}

    def on_message(msg) -> None:
        if "q" in got:
            return
        try:
            q, qd = order.extract(msg)
        except ShapeError as err:
            got["problem"] = str(err)
            return
        if not np.isfinite(q).all():
            got["problem"] = f"non-finite positions {q.tolist()}"
            return
        got["q"], got["qd"] = q, qd

    try:
        node = rclpy.create_node(f"gps_ros_read_joints_{os.getpid()}", context=context,
                                 use_global_arguments=False, enable_rosout=False,
                                 start_parameter_services=False)
        sub = node.create_subscription(JointState, topic, on_message, qos_profile_sensor_data)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + float(timeout)
        while "q" not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                name = sub.topic_name
                why = (f" (last message unusable: {got['problem']})" if "problem" in got
                       else " (no publisher on it: is the robot driver running, with the same "
                       "ROS_DOMAIN_ID?)" if node.count_publishers(name) == 0
                       else " (it has a publisher, but no message arrived)")
                raise NoJointStates(f"no sensor_msgs/JointState with joints {list(order.names)} "
                                    f"on {name} within {timeout:g} s{why}")
            executor.spin_once(timeout_sec=min(0.1, left))
        return got["q"], got["qd"]
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
        if handlers_before == SignalHandlerOptions.NO:
            # rclpy starts its signal-handling thread even with SignalHandlerOptions.NO (see
            # gps_ros.ros.common.run_node); join it unless someone else in this process uses it
            uninstall_signal_handlers()
