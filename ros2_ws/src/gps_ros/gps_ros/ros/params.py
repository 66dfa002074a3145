"""Every node parameter's description, range and whether it may change while the node runs
(no ROS here: tested in CI; :func:`gps_ros.ros.common.declare_parameters` turns them into
``ParameterDescriptor`` s that ``ros2 param describe`` shows).

A parameter is *live* when a change takes effect at once (the safety scales, the policy's
enable); every other one is read-only after start (set it in the parameter file or the launch):
``ros2 param set`` refuses it, and any value outside its range or choices is refused with the
reason -- at start in the parameter file too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class ParamSpec:
    """``range``: (low, high) inclusive for a number; ``choices``: the allowed strings."""

    description: str
    range: Optional[Tuple[float, float]] = None
    choices: Optional[Tuple[str, ...]] = None
    live: bool = False


INF = 1e300              # "no upper bound" (a finite number: ParameterDescriptor ranges)
S = ParamSpec
#: name -> spec, for every parameter of every node (tests/test_params.py checks the nodes' tables)
SPECS = {
    # the task and the robot
    "config": S("experiment config YAML (the task, the robot, the algorithm); '' = the default"),
    "robot_description": S("URDF text or file of the robot model and its limits; '' = the "
                           "config's agent.robot.urdf"),
    "joint_names": S("the robot's joints in order; [''] = agent.robot.joints, else must equal them"),
    "command_mode": S("effort | velocity | position; '' = agent.robot.command, else must equal it",
                      choices=("", "effort", "velocity", "position")),
    "robot_description_timeout": S("s to wait for the robot_description topic", (0.0, 3600.0)),
    "controller": S("the ros2_control forward controller commanded ('' = the one of the command "
                    "interface)"),
    "controller_manager": S("ros2_control controller manager whose controller must be active "
                            "('' = do not check)"),
    # safety filter (gps_ros/safety.py)
    "stale_periods": S("joint states older than this many control periods hold the arm",
                       (0.5, 1000.0)),
    "position_margin": S("rad kept inside the URDF position limits", (0.0, 3.2)),
    "hold_damping": S("effort hold: -hold_damping * qdot (N m s/rad)", (0.0, 1e4)),
    "brake_gain": S("effort: braking torque gain beyond the soft limits (N m s/rad)", (0.0, 1e4)),
    "effort_scale": S("fraction of the URDF effort limits commands are clamped to (live)",
                      (1e-3, 1.0), live=True),
    "velocity_scale": S("fraction of the URDF velocity limits commands are clamped to (live)",
                        (1e-3, 1.0), live=True),
    "max_step": S("position commands: rad per control period (0 = velocity limit x period)",
                  (0.0, 10.0)),
    # what a RunTrial goal may hold (gps_ros/ros/validate.py)
    "max_gain": S("|K| per unit of state, in multiples of each joint's command scale", (1e-6, INF)),
    "max_feedforward": S("|k|, in multiples of each joint's command scale", (1e-6, INF)),
    "max_noise_std": S("noise standard deviation, in multiples of the command scale", (1e-6, INF)),
    "max_noise_draw": S("|explicit standard-normal noise| in sigmas", (1.0, INF)),
    # sampler_node
    "rate_hz": S("control rate (Hz); sim_node: 0 = the config's control_rate_hz",
                 (0.0, 10000.0)),
    "lockstep": S("step once per new state (a sim_node) instead of at rate_hz"),
    "state_source": S("where the GPS state comes from",
                      choices=("embedded_sim", "gps_state", "fk", "joint_states")),
    "reset_mode": S("how the arm gets to a condition's start pose before a trial",
                    choices=("service", "move", "wait", "trajectory")),
    "trajectory_controller": S("reset_mode trajectory: the joint trajectory controller"),
    "reset_service": S("reset_mode service: the ResetCondition service"),
    "settle_time": S("reset_mode wait: s for the operator to reset the arm", (0.0, 3600.0)),
    "reset_velocity_scale": S("reset: peak speed, fraction of the URDF velocity limits",
                              (1e-3, 1.0)),
    "reset_max_acceleration": S("reset move: rad/s^2 profile peak", (1e-3, 100.0)),
    "reset_stiffness": S("reset move, effort: PD stiffness (1/s^2, x the mass matrix)",
                         (0.0, 1e4)),
    "reset_damping": S("reset move, effort: PD damping (1/s, x the mass matrix)", (0.0, 1e4)),
    "reset_viscous_friction": S("reset move: N m s/rad fed forward", (0.0, 1e4)),
    "reset_velocity_gain": S("reset move, velocity mode: position gain (1/s)", (0.0, 1e3)),
    "reset_position_tolerance": S("reset: rad from the start pose that counts as there",
                                  (1e-5, 1.0)),
    "reset_velocity_tolerance": S("reset move: rad/s below which the arm counts as still",
                                  (1e-5, 10.0)),
    "reset_timeout": S("reset: s after the profile to get within tolerance", (0.0, 600.0)),
    "experiment_dir": S("where trials (and frames) are written; '' = nowhere"),
    "image_transfer": S("frames to the learner: path (files in experiment_dir) or inline",
                        choices=("path", "inline")),
    "feedback_every": S("RunTrial feedback every this many steps", (1, 1_000_000)),
    "min_motion": S("rad; a trial moving less is 'robot did not respond' (0: off)", (0.0, 10.0)),
    "first_state_timeout": S("s a trial waits for the robot's first joint state", (0.0, 3600.0)),
    "publish_every": S("embedded sim: joint_states every n steps (0: never)", (0, 1_000_000)),
    "image_transport": S("camera topic: raw (camera/image_raw) or compressed",
                         choices=("raw", "compressed")),
    "max_image_age": S("s; frames older than this (vs the joint state) hold the arm; 0 = the "
                       "config camera's max_frame_age", (0.0, 60.0)),
    "realtime_priority": S("> 0: SCHED_FIFO priority of the control loop", (0, 99)),
    # sim_node
    "command_timeout": S("free-running sim: s a command is held before the hold command",
                         (0.0, 60.0)),
    "publish_clock": S("publish /clock from the simulated time"),
    "initial_condition": S("the condition the sim starts in", (0, 1_000_000)),
    "image_width": S("camera width (px); 0 = the config camera's", (0, 10_000)),
    "image_height": S("camera height (px); 0 = the config camera's", (0, 10_000)),
    "image_encoding": S("raw camera encoding ('' = no raw stream)",
                        choices=("", "rgb8", "bgr8", "rgba8", "bgra8", "mono8")),
    "compressed": S("compressed camera stream format ('' = none)", choices=("", "jpeg", "png")),
    "jpeg_quality": S("JPEG quality", (1, 100)),
    "camera_rate_hz": S("camera rate (Hz); 0 = a frame with every state", (0.0, 1000.0)),
    # policy_node
    "checkpoint": S("TorchScript export of the policy (.pt)"),
    "publish_overlay": S("publish ~/overlay (the frame with the policy's feature points)"),
    "overlay_scale": S("overlay upscaling factor", (1, 64)),
    "overlay_every": S("overlay every n-th frame", (1, 1_000_000)),
    "decimation": S("run the policy on every n-th joint state", (1, 10_000)),
    "enabled": S("the policy drives the arm (live; also ~/enable)", live=True),
    # coordinator_node
    "samplers": S("RunTrial action names or namespaces of the samplers ([''] = sampler_i)"),
    "num_samplers": S("samplers /<prefix>sampler_i/run_trial, i < num_samplers", (1, 10_000)),
    "sampler_prefix": S("namespace prefix of the default sampler names"),
    "iterations": S("total iterations (0 = the config's)", (0, 1_000_000)),
    "trial_timeout": S("s one trial may take (0 = no limit)", (0.0, 1e6)),
    "server_timeout": S("s to wait for the samplers and servers at start", (0.0, 1e6)),
    "min_samplers": S("start once this many samplers answer (0 = all)", (0, 10_000)),
    "lost_after": S("s after which a sampler gone from the graph mid-trial is given up",
                    (0.1, 3600.0)),
    "prepare_conditions": S("wait for the operator before each condition (~/continue)"),
    # trainer_node
    "num_threads": S("torch threads (0 = torch's default)", (0, 1024)),
}
del S


def spec(name: str) -> ParamSpec:
    """The spec of ``name``; KeyError names the parameter that lacks one."""
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"parameter {name!r} has no description in gps_ros.ros.params.SPECS") from None


def check(name: str, value) -> Optional[str]:
    """Why ``value`` is not allowed for ``name`` (one line), or None."""
    s = spec(name)
    if s.choices is not None and value not in s.choices:
        return f"{name} must be one of {', '.join(repr(c) for c in s.choices)}, not {value!r}"
    if s.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = s.range
        if not math.isfinite(value) or not lo <= value <= hi:
            return (f"{name} must be in [{lo:g}, {hi:g}], not {value!r}" if hi < INF else
                    f"{name} must be a finite number >= {lo:g}, not {value!r}")
    return None
