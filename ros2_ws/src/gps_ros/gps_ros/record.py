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

Message ``t`` of trial ``k`` is stamped ``start + (k (T + gap) + t) dt``; the header's
``frame_id`` is empty for joint states (as robot drivers publish them) and ``camera`` for images.
A metadata record ``gps_ros`` maps each trial (``c00/t00`` ...) to its time range, seed and
discarded flag, so a reader can split the timeline again.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from .atomic import atomic_write_bytes
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

JOINT_STATES_TOPIC = "/joint_states"
COMMAND_TOPIC = "/effort_controller/commands"
IMAGE_TOPIC = "/camera/image_raw"


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
                      gap_steps: Optional[int] = None, metadata: Optional[Dict[str, str]] = None
                      ) -> Dict[str, int]:
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
            index[f"c{m:02d}/t{i:02d}"] = {"start_ns": t0, "end_ns": t0 + (tr.T - 1) * dt_ns,
                                          "condition": m, "seed": meta.seed,
                                          "discarded": meta.discarded, "reason": meta.reason}
            k += 1
            counts[JOINT_STATES_TOPIC] = counts.get(JOINT_STATES_TOPIC, 0) + tr.T
            counts[command_topic] = counts.get(command_topic, 0) + tr.T
            if images is not None:
                counts[IMAGE_TOPIC] = counts.get(IMAGE_TOPIC, 0) + tr.T
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
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: Dict[str, List[McapMessage]] = {}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            out.setdefault(channel.topic, []).append(
                McapMessage(channel.topic, schema, channel, message.log_time, decoded))
    return out


def trials_from_mcap(path: str | Path, task, joint_names: Optional[Sequence[str]] = None
                     ) -> List[Trajectories]:
    """The trials of a recording (:func:`write_trials_mcap`, or a rosbag2 MCAP with its
    ``gps_ros`` metadata), one :class:`Trajectories` per condition, with each state rebuilt from
    the recorded joint states by the robot model (``task``: a :class:`gps_ros.task.TaskModel`,
    :meth:`~gps_ros.task.TaskModel.state` as a real robot's sampler builds it: ``state_source:
    fk``), the actions from the command topic and camera frames where recorded -- a lab records
    on the robot and fits elsewhere.  ``joint_names``: the recording's joints in the robot's
    order (default: the robot's).  Raises ValueError (one line) for a file without the trial
    index or with trials of different lengths."""
    from mcap.reader import make_reader

    from .sample import TrialMeta

    try:
        with open(path, "rb") as f:
            meta = {m.name: m.metadata for m in make_reader(f).iter_metadata()}
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - the mcap reader's own errors: one line
        raise ValueError(f"{path}: not a readable MCAP file ({type(err).__name__}: "
                         f"{str(err)[:120]})") from None
    if "gps_ros" not in meta or "trials" not in meta["gps_ros"]:
        raise ValueError(f"{path}: no gps_ros trial index (a recording of gps_ros trials has one)")
    index = json.loads(meta["gps_ros"]["trials"])
    msgs = read_trials_mcap(path)
    names = list(joint_names or task.joint_names)
    js = msgs.get(JOINT_STATES_TOPIC, [])
    if not js:
        raise ValueError(f"{path}: no {JOINT_STATES_TOPIC} messages")
    order = [list(js[0].ros_msg.name).index(n) for n in names]
    cmd_topic = next((t for t in msgs if t.endswith("/commands")), None)
    cmds = {m.log_time_ns: np.asarray(m.ros_msg.data, float) for m in msgs.get(cmd_topic, [])}
    frames = {m.log_time_ns: m.ros_msg for m in msgs.get(IMAGE_TOPIC, [])}
    times = np.array([m.log_time_ns for m in js])          # in log order: sorted
    per_cond: Dict[int, list] = {}
    for key, tr in sorted(index.items()):
        lo = int(np.searchsorted(times, tr["start_ns"], side="left"))
        hi = int(np.searchsorted(times, tr["end_ns"], side="right"))
        steps = js[lo:hi]
        c = int(tr["condition"])
        X = np.stack([task.state(np.asarray(m.ros_msg.position, float)[order],
                                 np.asarray(m.ros_msg.velocity, float)[order], c) for m in steps])
        U = np.stack([cmds[m.log_time_ns] for m in steps])
        imgs = None
        if frames:
            imgs = np.stack([np.frombuffer(bytes(frames[m.log_time_ns].data), np.uint8).reshape(
                frames[m.log_time_ns].height, frames[m.log_time_ns].width, -1)[..., :3]
                for m in steps])
        per_cond.setdefault(c, []).append((X, U, imgs, TrialMeta(
            condition=c, seed=tr.get("seed"), discarded=bool(tr.get("discarded")),
            reason=str(tr.get("reason") or ""))))
    out = []
    for c in sorted(per_cond):
        parts = per_cond[c]
        if len({p[0].shape for p in parts}) != 1:
            raise ValueError(f"{path}: condition {c}'s trials have different lengths")
        obs = {"image": np.stack([p[2] for p in parts])} if parts[0][2] is not None else {}
        out.append(Trajectories(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                                [p[3] for p in parts], obs))
    return out
