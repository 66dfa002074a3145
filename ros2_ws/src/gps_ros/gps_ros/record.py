"""Trial recording: GPS trials as ROS 2 messages in an MCAP file (opens in Foxglove; no ROS needed).

    gps-ros export-mcap --run runs/reach0 [--iteration 5] [--out trials.mcap]

(:func:`gps_ros.experiment.export_iteration`), or ``logging.mcap: true`` in the experiment config,
which writes ``iterations/NNNN/trials.mcap`` every iteration.  Written with the ``mcap`` and
``mcap-ros2-support`` packages (CDR encoding, ``ros2msg`` schemas with their dependencies, as
``ros2 bag record -s mcap`` writes them).

Topics (one timeline; the trials follow each other, condition-major, with a 1 s gap between them)::

    /joint_states                  sensor_msgs/msg/JointState         q, qdot, effort = commanded u
    /effort_controller/commands    std_msgs/msg/Float64MultiArray     u (what a ros2_control forward
                                                                      command controller receives)
    /camera/image_raw              sensor_msgs/msg/Image              obs["image"], rgb8, if present
    /gps_ros/trials                gps_msgs/msg/Trajectory            each trial whole, at its last
                                                                      step: the sampler's own
                                                                      states X, U, condition, seed,
                                                                      discarded + reason (frames:
                                                                      on /camera/image_raw)
    /gps_ros/controllers           gps_msgs/msg/LinearGaussianController  the controllers the
                                                                      iteration computed from
                                                                      these trials, one per
                                                                      condition in order, after
                                                                      the last trial (if given)

Message ``t`` of trial ``k`` is stamped ``start + (k (T + gap) + t) dt``; the header's
``frame_id`` is empty for joint states (as robot drivers publish them) and ``camera`` for images.
A metadata record ``gps_ros`` maps each trial (``c00/t00`` ...) to its time range, seed and
discarded flag, so a reader can split the timeline again.  With gps_msgs built, ``ros2 bag
info`` lists every topic and ``ros2 bag play`` publishes them all.

:func:`read_recording` reads one back: the trials per condition (states as recorded, or rebuilt
from the joint states by the robot model) and the controllers -- what ``gps-ros fit`` and
``gps-ros train-policy`` use to fit the dynamics and to train the policy offline.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from .atomic import atomic_write_bytes
from .ros import convert
from .sample import Trajectories

_SEP = "=" * 80 + "\n"

TIME_MSG = "int32 sec\nuint32 nanosec\n"
HEADER_MSG = "builtin_interfaces/Time stamp\nstring frame_id\n"

JOINT_STATE_SCHEMA = (
    "std_msgs/Header header\n"
    "string[] name\n"
    "float64[] position\n"
    "float64[] velocity\n"
    "float64[] effort\n"
    + _SEP + "MSG: std_msgs/Header\n" + HEADER_MSG
    + _SEP + "MSG: builtin_interfaces/Time\n" + TIME_MSG)

FLOAT64_MULTI_ARRAY_SCHEMA = (
    "std_msgs/MultiArrayLayout layout\n"
    "float64[] data\n"
    + _SEP + "MSG: std_msgs/MultiArrayLayout\n"
    "std_msgs/MultiArrayDimension[] dim\n"
    "uint32 data_offset\n"
    + _SEP + "MSG: std_msgs/MultiArrayDimension\n"
    "string label\n"
    "uint32 size\n"
    "uint32 stride\n")

IMAGE_SCHEMA = (
    "std_msgs/Header header\n"
    "uint32 height\n"
    "uint32 width\n"
    "string encoding\n"
    "uint8 is_bigendian\n"
    "uint32 step\n"
    "uint8[] data\n"
    + _SEP + "MSG: std_msgs/Header\n" + HEADER_MSG
    + _SEP + "MSG: builtin_interfaces/Time\n" + TIME_MSG)

#: gps_msgs/msg/Trajectory.msg and LinearGaussianController.msg without their comments
#: (``tests/test_observability.py`` checks them against the interface package's files)
TRAJECTORY_MSG = (
    "std_msgs/Header header\n"
    "uint32 condition\n"
    "uint32 horizon\n"
    "uint32 dx\n"
    "uint32 du\n"
    "float64[] states\n"
    "float64[] actions\n"
    "builtin_interfaces/Time[] stamps\n"
    "bool has_seed\n"
    "uint64 seed\n"
    "string source\n"
    "bool discarded\n"
    "string reason\n"
    "sensor_msgs/Image[] images\n"
    "string[] image_paths\n")
CONTROLLER_MSG = (
    "uint32 horizon\n"
    "uint32 dx\n"
    "uint32 du\n"
    "float64[] gain\n"
    "float64[] bias\n"
    "float64[] covariance_cholesky\n"
    "float64[] x_ref\n"
    "float64[] u_ref\n")
TRAJECTORY_SCHEMA = (TRAJECTORY_MSG + _SEP + "MSG: std_msgs/Header\n" + HEADER_MSG
                     + _SEP + "MSG: builtin_interfaces/Time\n" + TIME_MSG
                     + _SEP + "MSG: sensor_msgs/Image\n" + IMAGE_SCHEMA.split(_SEP)[0])
CONTROLLER_SCHEMA = CONTROLLER_MSG

JOINT_STATES_TOPIC = "/joint_states"
COMMAND_TOPIC = "/effort_controller/commands"
IMAGE_TOPIC = "/camera/image_raw"
TRIALS_TOPIC = "/gps_ros/trials"
CONTROLLERS_TOPIC = "/gps_ros/controllers"


def _stamp(ns: int) -> dict:
    return {"sec": int(ns // 1_000_000_000), "nanosec": int(ns % 1_000_000_000)}


def _image_encoding(img: np.ndarray) -> tuple:
    """(encoding, channels) of one (H, W[, C]) uint8 image."""
    if img.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {img.dtype}")
    c = 1 if img.ndim == 2 else img.shape[2]
    enc = {1: "mono8", 3: "rgb8", 4: "rgba8"}.get(c)
    if enc is None:
        raise ValueError(f"cannot encode an image with {c} channels")
    return enc, c


def write_trials_mcap(path: str | Path, trials: Sequence[Trajectories], dt: float, *,
                      joint_pos: slice = slice(0, 7), joint_vel: slice = slice(7, 14),
                      joint_names: Optional[List[str]] = None, command_topic: str = COMMAND_TOPIC,
                      start_ns: int = 1_000_000_000,
                      gap_steps: Optional[int] = None, metadata: Optional[Dict[str, str]] = None,
                      controllers: Optional[Sequence] = None) -> Dict[str, int]:
    """Write ``trials`` (one :class:`Trajectories` per condition) to ``path``, atomically.

    Args:
        path: the .mcap file.
        trials: per condition, X (N, T, dX), U (N, T, dU), optional obs["image"] (N, T, H, W, 3).
        dt: control period (s).
        joint_pos, joint_vel: where q and qdot are in the state vector.
        joint_names: JointState names (default joint0, joint1, ...).
        command_topic: the Float64MultiArray topic of the commands.
        start_ns: timestamp of the first message.
        gap_steps: steps of silence between trials (default: 1 s).
        metadata: extra key/values for the ``gps_ros`` metadata record.

        controllers: the iteration's new controllers, one per condition
            (:class:`gps_ros.control.LinearGaussianController`), or None.
    Returns:
        message counts per topic.
    """
    from mcap_ros2.writer import Writer

    dt_ns = int(round(dt * 1e9))
    gap = int(round(1.0 / dt)) if gap_steps is None else int(gap_steps)
    buf = io.BytesIO()
    counts: Dict[str, int] = {}
    index: Dict[str, dict] = {}
    writer = Writer(buf)
    js = writer.register_msgdef("sensor_msgs/msg/JointState", JOINT_STATE_SCHEMA)
    cmd = writer.register_msgdef("std_msgs/msg/Float64MultiArray", FLOAT64_MULTI_ARRAY_SCHEMA)
    traj = writer.register_msgdef("gps_msgs/msg/Trajectory", TRAJECTORY_SCHEMA)
    img_schema = None
    k = 0
    for m, tr in enumerate(trials):
        nq = joint_pos.stop - joint_pos.start
        names = joint_names or [f"joint{i}" for i in range(nq)]
        if len(names) != nq:
            raise ValueError(f"{len(names)} joint names for {nq} joints")
        images = tr.obs.get("image")
        if images is not None and img_schema is None:
            img_schema = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_SCHEMA)
        layout = {"dim": [{"label": "joints", "size": tr.dU, "stride": tr.dU}], "data_offset": 0}
        for i in range(tr.N):
            t0 = start_ns + k * (tr.T + gap) * dt_ns
            q, qd, U = tr.X[i, :, joint_pos], tr.X[i, :, joint_vel], tr.U[i]
            for t in range(tr.T):
                ns = t0 + t * dt_ns
                seq = k * tr.T + t
                writer.write_message(JOINT_STATES_TOPIC, js, {
                    "header": {"stamp": _stamp(ns), "frame_id": ""}, "name": names,
                    "position": q[t].tolist(), "velocity": qd[t].tolist(),
                    "effort": U[t].tolist()}, log_time=ns, publish_time=ns, sequence=seq)
                writer.write_message(command_topic, cmd, {"layout": layout, "data": U[t].tolist()},
                                     log_time=ns, publish_time=ns, sequence=seq)
                if images is not None:
                    im = np.ascontiguousarray(images[i, t])
                    enc, c = _image_encoding(im)
                    writer.write_message(IMAGE_TOPIC, img_schema, {
                        "header": {"stamp": _stamp(ns), "frame_id": "camera"},
                        "height": im.shape[0], "width": im.shape[1], "encoding": enc,
                        "is_bigendian": 0, "step": im.shape[1] * c, "data": im.tobytes()},
                        log_time=ns, publish_time=ns, sequence=seq)
            meta = tr.meta[i]
            end = t0 + (tr.T - 1) * dt_ns
            msg = convert.trial_to_msg(tr.X[i], tr.U[i], meta, convert.Trajectory(),
                                       stamps=[(t0 + t * dt_ns) * 1e-9 for t in range(tr.T)])
            msg.header.stamp = convert.Time(**_stamp(end))
            writer.write_message(TRIALS_TOPIC, traj, msg, log_time=end, publish_time=end,
                                 sequence=k)
            counts[TRIALS_TOPIC] = counts.get(TRIALS_TOPIC, 0) + 1
            index[f"c{m:02d}/t{i:02d}"] = {"start_ns": t0, "end_ns": end,
                                          "condition": m, "seed": meta.seed,
                                          "discarded": meta.discarded, "reason": meta.reason}
            k += 1
            counts[JOINT_STATES_TOPIC] = counts.get(JOINT_STATES_TOPIC, 0) + tr.T
            counts[command_topic] = counts.get(command_topic, 0) + tr.T
            if images is not None:
                counts[IMAGE_TOPIC] = counts.get(IMAGE_TOPIC, 0) + tr.T
    if controllers is not None:
        if len(controllers) != len(trials):
            raise ValueError(f"{len(controllers)} controllers for {len(trials)} conditions")
        lgc = writer.register_msgdef("gps_msgs/msg/LinearGaussianController", CONTROLLER_SCHEMA)
        ns = start_ns + k * (trials[0].T + gap) * dt_ns if trials else start_ns
        for m, c in enumerate(controllers):
            writer.write_message(CONTROLLERS_TOPIC, lgc,
                                 convert.controller_to_msg(c, convert.LinearGaussianController()),
                                 log_time=ns, publish_time=ns, sequence=m)
        counts[CONTROLLERS_TOPIC] = len(controllers)
    md = {"trials": json.dumps(index), "dt": repr(float(dt))}
    md.update(metadata or {})
    writer.add_metadata("gps_ros", md)
    writer.finish()
    atomic_write_bytes(path, buf.getvalue())
    return counts


class McapMessage(NamedTuple):
    topic: str
    schema: object        # mcap Schema (name, encoding, data = the ros2msg text)
    channel: object       # mcap Channel (topic, message_encoding, ...)
    log_time_ns: int
    ros_msg: object       # the decoded ROS 2 message (attribute access, e.g. .position)


def read_trials_mcap(path: str | Path) -> Dict[str, List[McapMessage]]:
    """topic -> decoded ROS 2 messages in file order (``mcap`` reader with the
    ``mcap_ros2`` decoder); for tests and quick looks."""
    with open(path, "rb") as f:
        return _decoded_messages(f)


def _decoded_messages(f, topics: Optional[Sequence[str]] = None) -> Dict[str, List[McapMessage]]:
    """topic -> decoded messages in log-time order (``topics``: only these)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: Dict[str, List[McapMessage]] = {}
    reader = make_reader(f, decoder_factories=[DecoderFactory()])
    for schema, channel, message, decoded in reader.iter_decoded_messages(
            topics=topics, log_time_order=True):
        out.setdefault(channel.topic, []).append(
            McapMessage(channel.topic, schema, channel, message.log_time, decoded))
    return out


class Recording(NamedTuple):
    """One recording read back (:func:`read_recording`)."""
    trials: List[Trajectories]      # per condition, in condition order
    controllers: Optional[list]     # the iteration's new controllers, per condition (or None)
    metadata: Dict[str, str]        # the ``gps_ros`` metadata record (experiment, iteration, dt)


def read_recording(path: str | Path, task=None, joint_names: Optional[Sequence[str]] = None,
                   states: str = "auto") -> Recording:
    """The trials and controllers of a recording (:func:`write_trials_mcap`, or a rosbag2 MCAP
    with its ``gps_ros`` metadata) -- a lab records on the robot and fits or trains elsewhere.

    ``states``: ``"recorded"`` takes each trial's states, actions and metadata from its
    gps_msgs/Trajectory message (the sampler's own state vector, exactly); ``"joint_states"``
    rebuilds every state from the recorded joint states by the robot model (``task``: a
    :class:`gps_ros.task.TaskModel`; :meth:`~gps_ros.task.TaskModel.state` as a real robot's
    sampler builds it: ``state_source: fk``) and takes the actions from the command topic;
    ``"auto"``: recorded where the file has trial messages (recordings before gps_msgs types were
    added have none).  Camera frames come from the image topic either way.  ``joint_names``: the
    recording's joints in the robot's order (default: the robot's).  Raises ValueError (one line)
    for a file that is not a gps_ros recording or with trials of different lengths."""
    from mcap.reader import make_reader

    from .sample import TrialMeta

    if states not in ("auto", "recorded", "joint_states"):
        raise ValueError(f"states must be auto, recorded or joint_states, not {states!r}")
    try:
        with open(path, "rb") as f:
            reader = make_reader(f)
            meta = {m.name: m.metadata for m in reader.iter_metadata()}
            summary = reader.get_summary()            # None: a file written without one
            topics = None if summary is None else {c.topic for c in summary.channels.values()}
            if states == "auto":
                states = "recorded" if topics is None or TRIALS_TOPIC in topics else "joint_states"
            wanted = None if topics is None else [IMAGE_TOPIC, CONTROLLERS_TOPIC] + (
                [TRIALS_TOPIC] if states == "recorded" else
                [JOINT_STATES_TOPIC] + [t for t in topics if t.endswith("/commands")])
            f.seek(0)
            msgs = _decoded_messages(f, wanted)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - the mcap reader's own errors: one line
        raise ValueError(f"{path}: not a readable MCAP file ({type(err).__name__}: "
                         f"{str(err)[:120]})") from None
    if "gps_ros" not in meta or "trials" not in meta["gps_ros"]:
        raise ValueError(f"{path}: no gps_ros trial index (a recording of gps_ros trials has one)")
    index = json.loads(meta["gps_ros"]["trials"])
    if states == "recorded":
        if not msgs.get(TRIALS_TOPIC):
            raise ValueError(f"{path}: no {TRIALS_TOPIC} messages (rebuild the states from the "
                             f"joint states instead)")
        by_end = {m.log_time_ns: m.ros_msg for m in msgs[TRIALS_TOPIC]}
    else:
        if task is None:
            raise ValueError("rebuilding states from joint states needs the robot model (task)")
        js = msgs.get(JOINT_STATES_TOPIC, [])
        if not js:
            raise ValueError(f"{path}: no {JOINT_STATES_TOPIC} messages")
        names = list(joint_names or task.joint_names)
        order = [list(js[0].ros_msg.name).index(n) for n in names]
        cmd_topic = next((t for t in msgs if t.endswith("/commands")), None)
        cmds = {m.log_time_ns: np.asarray(m.ros_msg.data, float) for m in msgs.get(cmd_topic, [])}
        times = np.array([m.log_time_ns for m in js])          # in log order: sorted
    frames = msgs.get(IMAGE_TOPIC, [])
    frame_times = np.array([m.log_time_ns for m in frames])
    per_cond: Dict[int, list] = {}
    for key, tr in sorted(index.items()):
        c = int(tr["condition"])
        if states == "recorded":
            msg = by_end.get(int(tr["end_ns"]))
            if msg is None:
                raise ValueError(f"{path}: trial {key} has no {TRIALS_TOPIC} message")
            X, U, tmeta, _ = convert.trial_from_msg(msg)
        else:
            lo = int(np.searchsorted(times, tr["start_ns"], side="left"))
            hi = int(np.searchsorted(times, tr["end_ns"], side="right"))
            steps = js[lo:hi]
            X = np.stack([task.state(np.asarray(m.ros_msg.position, float)[order],
                                     np.asarray(m.ros_msg.velocity, float)[order], c)
                          for m in steps])
            U = np.stack([cmds[m.log_time_ns] for m in steps])
            tmeta = TrialMeta(condition=c, seed=tr.get("seed"), discarded=bool(tr.get("discarded")),
                              reason=str(tr.get("reason") or ""))
        imgs = None
        if len(frames):
            lo = int(np.searchsorted(frame_times, tr["start_ns"], side="left"))
            hi = int(np.searchsorted(frame_times, tr["end_ns"], side="right"))
            imgs = np.stack([convert.image_from_msg(m.ros_msg) for m in frames[lo:hi]])
            if len(imgs) != len(X):
                raise ValueError(f"{path}: trial {key} has {len(imgs)} camera frames for "
                                 f"{len(X)} steps")
        per_cond.setdefault(c, []).append((X, U, imgs, tmeta))
    out = []
    for c in sorted(per_cond):
        parts = per_cond[c]
        if len({p[0].shape for p in parts}) != 1:
            raise ValueError(f"{path}: condition {c}'s trials have different lengths")
        obs = {"image": np.stack([p[2] for p in parts])} if parts[0][2] is not None else {}
        out.append(Trajectories(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                                [p[3] for p in parts], obs))
    ctrl_msgs = msgs.get(CONTROLLERS_TOPIC, [])
    controllers = [convert.controller_from_msg(m.ros_msg) for m in ctrl_msgs] or None
    if controllers is not None and len(controllers) != len(out):
        raise ValueError(f"{path}: {len(controllers)} controllers for {len(out)} conditions")
    return Recording(out, controllers, dict(meta["gps_ros"]))

