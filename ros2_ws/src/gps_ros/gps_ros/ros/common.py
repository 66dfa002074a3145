"""Shared helpers of the nodes: config lookup, parameter declaration, the safety filter from
parameters, and :func:`run_node`, the main() of every node (rclpy imported inside it only, so this
module and its tests need no ROS)."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

from gps_ros.safety import SafetyFilter


def load_experiment_config(path: str):
    from gps_ros.config import load_config
    from gps_ros.paths import default_config_path

    return load_config(path or default_config_path())


#: what every node that commands or models the robot declares: where the URDF comes from, and
#: the joints and command interface it must agree with (both come from the config's agent.robot)
ROBOT_PARAMS = {
    "robot_description": "",      # URDF text or file; "": the config's agent.robot.urdf (its value
                                  # 'robot_description': the robot_description topic)
    "joint_names": [""],          # [""]: agent.robot.joints; else must equal them (a check)
    "command_mode": "",           # "": agent.robot.command; else must equal it (a check)
    "robot_description_timeout": 10.0,   # s to wait for the robot_description topic
}

#: seconds an action server keeps a finished goal (its request and result) for a late result
#: request.  rclpy's default, 900 s, kept every RunTrial goal of the last 15 minutes in the
#: sampler (~75 kB each on the reach task: 13 MiB per 100 iterations in bench/soak_ros.py) and
#: every TrainPolicy goal (all trials of an iteration, frames included) in the trainer; the
#: coordinator asks for the result as it sends the goal, so a minute is plenty.
ACTION_RESULT_TIMEOUT = 60

SAFETY_PARAMS = {
    **ROBOT_PARAMS,
    "stale_periods": 3.0,
    "position_margin": 0.05,
    "hold_damping": 0.0,
    "brake_gain": 0.0,
    "effort_scale": 1.0,
    "velocity_scale": 1.0,
    "max_step": 0.0,              # position mode: rad per control period (0: velocity limit x period)
}


def read_robot_description(value: str) -> Optional[str]:
    """The URDF of a ``robot_description`` parameter: its text, or the file it names; None when
    empty."""
    if not value:
        return None
    if value.lstrip().startswith("<"):
        return value
    return Path(os.path.expanduser(value)).read_text()


def wait_for_robot_description(node, timeout: float) -> str:
    """The URDF on the ``robot_description`` topic (std_msgs/String, transient local, as
    robot_state_publisher publishes it); RuntimeError after ``timeout`` s."""
    import time

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    got = []
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    helper = rclpy.create_node(f"{node.get_name()}_robot_description", namespace=node.get_namespace(),
                               context=node.context, use_global_arguments=False,
                               enable_rosout=False, start_parameter_services=False)
    try:
        topic = node.resolve_topic_name("robot_description")
        helper.create_subscription(String, topic, lambda m: got.append(m.data), qos)
        end = time.monotonic() + timeout
        while not got and time.monotonic() < end:
            rclpy.spin_once(helper, timeout_sec=0.1)
            check_stop()
    finally:
        helper.destroy_node()
    if not got:
        raise RuntimeError(f"no URDF on {topic} within {timeout:g} s (is robot_state_publisher "
                           "running?); or set the robot_description parameter")
    return got[0]


def robot_from_params(cfg, p: SimpleNamespace, node=None):
    """The :class:`~gps_ros.task.TaskModel` a node uses: the config's agent section on the URDF of
    the ``robot_description`` parameter (text or file), else of ``agent.robot.urdf`` (its value
    ``robot_description``: the topic, which needs ``node``).  ``joint_names`` and
    ``command_mode``, where set, must agree with the config's robot."""
    from gps_ros.task import FROM_ROS, TaskModel

    urdf = read_robot_description(p.robot_description)
    topic = None
    if urdf is None and cfg.agent.robot.urdf == FROM_ROS:
        if node is None:
            raise RuntimeError("agent.robot.urdf robot_description needs a ROS node to read it")
        urdf = wait_for_robot_description(node, float(p.robot_description_timeout))
        topic = node.resolve_topic_name("robot_description")
    task = TaskModel(cfg.agent, urdf=urdf)
    if topic is not None:
        node.get_logger().info(f"robot model from the URDF on {topic}: joints "
                               f"{', '.join(task.joint_names)}, {task.command} commands")
    names = [n for n in p.joint_names if n]
    if names and list(names) != list(task.joint_names):
        raise ValueError(f"joint_names {list(names)} disagree with the config's agent.robot.joints "
                         f"{list(task.joint_names)}")
    if p.command_mode and p.command_mode != task.command:
        raise ValueError(f"command_mode {p.command_mode!r} disagrees with the config's "
                         f"agent.robot.command {task.command!r}")
    return task


def safety_from_node(p: SimpleNamespace, task, rate_hz: float) -> SafetyFilter:
    """The SafetyFilter a node configures from its :data:`SAFETY_PARAMS`: the limits of the
    robot's URDF, in its command interface."""
    return SafetyFilter(task.description.limits(), mode=task.command, control_period=1.0 / rate_hz,
                        stale_periods=p.stale_periods, position_margin=p.position_margin,
                        hold_damping=p.hold_damping, brake_gain=p.brake_gain,
                        effort_scale=p.effort_scale, velocity_scale=p.velocity_scale,
                        max_step=p.max_step or None)


#: image_transport -> the camera topic it subscribes (relative names, as image_transport's)
CAMERA_TOPICS = {"raw": "camera/image_raw", "compressed": "camera/image_raw/compressed"}


def camera_pipeline(camera_cfg, image_size, max_image_age: float, safety: SafetyFilter):
    """The node's :class:`~gps_ros.image_pipeline.ImagePipeline` (from the experiment config's
    camera section, else the centred crop to ``image_size``; None when neither) and the safety
    filter's camera watchdog set to its ``max_age`` (``max_image_age`` > 0 overrides it)."""
    from gps_ros.image_pipeline import pipeline_for

    pipe = pipeline_for(camera_cfg, image_size, float(max_image_age) or None)
    if pipe is not None:
        safety.max_image_age = pipe.max_age
    return pipe


def camera_subscription(node, transport: str, callback, callback_group=None):
    """Subscribe ``callback`` to the camera: sensor_msgs/Image on camera/image_raw (``raw``) or
    CompressedImage on camera/image_raw/compressed (``compressed``), sensor-data QoS."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    if transport not in CAMERA_TOPICS:
        raise ValueError(f"image_transport {transport!r} must be raw or compressed")
    return node.create_subscription(CompressedImage if transport == "compressed" else Image,
                                    CAMERA_TOPICS[transport], callback, qos_profile_sensor_data,
                                    callback_group=callback_group)


def camera_frame(node, msg, pipeline):
    """(frame through ``pipeline``, stamp in s) of a camera message, or None (refused, logged)."""
    from gps_ros.ros import convert

    try:
        frame = convert.image_from_msg(msg, pipeline)
    except convert.ShapeError as err:
        node.get_logger().error(f"camera frame refused: {err}", throttle_duration_sec=1.0)
        return None
    return frame, convert.time_to_seconds(msg.header.stamp) or node.get_clock().now().nanoseconds * 1e-9


def declare_parameters(node, defaults: dict, on_live=None) -> SimpleNamespace:
    """Declare ``defaults`` (name -> default value) on ``node`` with their descriptions, ranges
    and choices (:mod:`gps_ros.ros.params`: ``ros2 param describe`` shows them); return their
    values by name.  A value outside its range or choices stops the node with one line; later
    sets are refused for read-only parameters (all but the live ones) and for values out of
    range, and a live one is passed to ``on_live(name, value)`` (raise ValueError to refuse)."""
    from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                    SetParametersResult)

    from gps_ros.ros.params import check, spec

    out = {}
    for k, v in defaults.items():
        s = spec(k)
        d = ParameterDescriptor(description=s.description, read_only=not s.live)
        if s.range is not None and isinstance(v, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(s.range[0]),
                                                         to_value=float(s.range[1]), step=0.0)]
        elif s.range is not None and isinstance(v, int) and not isinstance(v, bool):
            d.integer_range = [IntegerRange(from_value=int(s.range[0]),
                                            to_value=int(min(s.range[1], 2**62)), step=1)]
        if s.choices is not None:
            d.additional_constraints = "one of: " + ", ".join(repr(c) for c in s.choices)
        node.declare_parameter(k, v, d)
        out[k] = node.get_parameter(k).value
        why = check(k, out[k])
        if why:
            raise ValueError(why)

    def on_set(params):
        for prm in params:
            if prm.name not in defaults:
                continue
            why = check(prm.name, prm.value)
            if why is None and on_live is not None:
                try:
                    on_live(prm.name, prm.value)
                except ValueError as err:
                    why = str(err)
            if why:
                return SetParametersResult(successful=False, reason=why)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return SimpleNamespace(**out)


#: set by SIGINT / SIGTERM in a node process (see :func:`run_node`).  Once the node is up, the
#: main thread stops only where it waits (the idle loop, :func:`gps_ros.ros.clients.wait_future`,
#: the wait for the samplers), never in the middle of a checkpoint write, and an interrupt cannot
#: be swallowed by a ``__del__`` it happened to land in
STOP = threading.Event()
_INTERRUPT_AT_ONCE = [True]          # while the node is being built (imports, waits for servers)


def _on_stop_signal(signum, frame):
    STOP.set()
    if _INTERRUPT_AT_ONCE[0]:
        raise KeyboardInterrupt(f"signal {signum}")


def check_stop() -> None:
    """Raise KeyboardInterrupt in the main thread once a stop signal has arrived."""
    if STOP.is_set() and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt("stop requested")


def run_node(make_node: Callable, args=None, threads: Optional[int] = None,
             work: Optional[Callable] = None) -> int:
    """The main() of every node: init, build, spin until Ctrl-C / SIGTERM / shutdown, stop cleanly.

    rclpy's own signal handlers shut the context down the moment SIGINT arrives, so anything a node
    sends on the way out (the hold command of a sampler or policy node) would fail with "publisher's
    context is invalid".  Here SIGINT and SIGTERM set :data:`STOP`, which the main thread polls
    where it waits while the executor spins in a worker thread (during start-up they raise
    KeyboardInterrupt at once); the node's ``stop()`` then runs with the context still valid (hold
    command, trial aborted), and only after it are the executor, the node and the context shut
    down.  ``ros2 launch`` sends SIGINT, then SIGTERM: both end the same way.

    Args:
        make_node: builds the node (after rclpy.init).
        threads: executor threads (None: a SingleThreadedExecutor).

        work: runs in the main thread while the executor spins (the coordinator's GPS loop); its
            return value is the exit code.  Without it the main thread waits for a signal.

    Returns the process exit code (0 on a clean stop).
    """
    import signal
    import time
    import traceback

    import rclpy
    from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                                 SingleThreadedExecutor)
    from rclpy.signals import SignalHandlerOptions, uninstall_signal_handlers

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    node = executor = spinner = None
    code = 0
    try:
        node = make_node()
        executor = (MultiThreadedExecutor(num_threads=threads) if threads
                    else SingleThreadedExecutor())
        executor.add_node(node)

        def spin():
            try:
                executor.spin()
            except ExternalShutdownException:
                pass

        spinner = threading.Thread(target=spin, daemon=True, name="executor")
        spinner.start()
        _INTERRUPT_AT_ONCE[0] = False
        check_stop()                   # a signal during start-up that was not raised
        if work is not None:
            code = int(work(node) or 0)
        else:
            while spinner.is_alive() and rclpy.ok():
                time.sleep(0.1)
                check_stop()
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001
        name = node.get_name() if node is not None else getattr(make_node, "__name__", "node")
        if spinner is None:            # a failed start (bad parameter, missing file): one line
            print(f"[{name}] error: {type(err).__name__}: {err}", flush=True)
        else:                          # a bug while running: the whole traceback
            traceback.print_exc()
        code = 1
    finally:
        # ignore further signals while stopping: ros2 launch follows SIGINT with SIGTERM
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            stop = getattr(node, "stop", None)
            if stop is not None:
                try:
                    stop()
                except Exception as err:  # noqa: BLE001
                    node.get_logger().error(f"while stopping: {type(err).__name__}: {err}")
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if spinner is not None:
            # a daemon thread still inside rclpy's wait when the interpreter exits is killed
            # through C++ frames: std::terminate, exit code -6
            spinner.join(timeout=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        # rclpy starts its deferred signal-handling thread even with SignalHandlerOptions.NO;
        # try_shutdown() leaves it running: join it, as rclpy.shutdown() would
        uninstall_signal_handlers()
    return code
