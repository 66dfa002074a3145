"""``gps-ros targets record | show``: set reach targets by moving the arm there.

As in the original GPS target-setup tool: the operator puts the arm in gravity-compensation mode,
moves the end effector by hand to where a condition's target should be, and runs::

    gps-ros targets record --config config/my_task.yaml --condition 2

and likewise, with the arm at the condition's start pose, ``... --condition 2 --start`` records
that pose as the condition's ``start_joint_positions`` (the original tool's "set initial position").

The joint positions (of ``agent.robot.joints``, in that order) come from ``--joints q1 ... qn``
or from one ``sensor_msgs/JointState`` on ``--topic`` (:mod:`gps_ros.ros.read_joints`, ROS 2 needed
only there; joints matched by name).  The end-effector point is the forward kinematics of the
config's robot model (:class:`gps_ros.task.TaskModel`, the same model that computes
:class:`gps_ros.ros.sampler_node.FKState` from a real arm's joint states): ``ee_points[0]`` in the
``agent.robot.ee_link`` frame, which must be the link origin, so at the recorded joints the cost's
distance is exactly 0.  ``--urdf FILE`` takes the robot's URDF from that file instead of
``agent.robot.urdf`` (e.g. the robot's own description when the config says
``robot_description``); the links and joints are still the config's.

The target is written as ``agent.conditions[K].target``; ``K`` equal to the number of conditions
appends one.  With ``--start`` the joints are written as ``agent.conditions[K].start_joint_positions``
instead (the target is left alone; the condition must exist).

Editing the YAML: pyyaml has no round-trip mode and ruamel.yaml is not a dependency, so the file
is edited as text: the value's exact character span (from pyyaml's node marks) is replaced by a
flow list ``[x, y, z]`` (new keys / conditions are inserted as lines in the surrounding style),
keeping every comment and the key order.  The edit is accepted only if the edited text parses to
exactly the intended data; otherwise (unusual layouts: aliases, merge keys, ...) the whole file is
rewritten with ``yaml.safe_dump`` and a warning says that its comments are lost.  Either way the
result must pass :func:`gps_ros.config.parse_config` before it atomically replaces the file
(temp file + fsync + rename); an error leaves the file untouched.  Numbers are written with
``repr`` precision, so the stored target round-trips bit-exactly.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import yaml

from gps_ros.atomic import atomic_write_bytes


class TargetsError(Exception):
    """A one-line error of ``gps-ros targets``; ``code`` is the exit status (2: bad input)."""

    def __init__(self, msg: str, code: int = 2) -> None:
        super().__init__(msg)
        self.code = code


# --- forward kinematics ----------------------------------------------------------------------------
def task_model(agent, urdf: Optional[str] = None):
    """The config's :class:`~gps_ros.task.TaskModel` (``urdf``: a URDF file in place of
    ``agent.robot.urdf``)."""
    from gps_ros.robot import RobotError
    from gps_ros.task import TaskModel

    text = None
    if urdf is not None:
        path = Path(urdf).expanduser()
        if not path.is_file():
            raise TargetsError(f"--urdf {urdf}: no such file")
        text = path.read_text()
    try:
        return TaskModel(agent, urdf=text)
    except RobotError as err:
        raise TargetsError(f"{'--urdf ' + urdf + ': ' if urdf else 'config: '}{err}") from None


def ee_position(agent, q: Sequence[float], urdf: Optional[str] = None,
                task=None) -> Tuple[np.ndarray, List[str]]:
    """World position (3,) of the cost's first EE point at joint positions ``q`` (in
    ``agent.robot.joints`` order), and warnings (joints outside their limits).

    ``agent``: the config's :class:`gps_ros.config.AgentConfig`; ``task``: its TaskModel if
    already built."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1 or not np.isfinite(q).all():
        raise TargetsError(f"joint positions must be finite numbers, got {q.tolist()}")
    task = task or task_model(agent, urdf)
    if q.shape != (task.n,):
        raise TargetsError(f"the robot has {task.n} joints ({' '.join(task.joint_names)}), got "
                           f"{q.size} joint positions")
    point = task.robot.points(q, task.ee_points_local[:1])[0]
    return point, _limit_warnings(q, task.robot.lower, task.robot.upper, task.joint_names)


def _limit_warnings(q, lower, upper, names) -> List[str]:
    out = []
    for n, v, lo, hi in zip(names, q, lower, upper):
        if lo < hi and not lo - 1e-6 <= v <= hi + 1e-6:
            out.append(f"joint {n} = {v:.4f} rad is outside its limits [{lo:.4f}, {hi:.4f}]")
    return out


# --- YAML text editing -----------------------------------------------------------------------------
def _num(x: float) -> str:
    """A float as YAML 1.1 (pyyaml) reads back bit-exactly: repr, with a '.' in the mantissa."""
    s = repr(float(x))
    if "e" in s:
        mant, exp = s.split("e")
        if "." not in mant:
            mant += ".0"
        if exp[0] not in "+-":
            exp = "+" + exp
        s = f"{mant}e{exp}"
    return s


def _flow(values) -> str:
    return "[" + ", ".join(_num(v) for v in values) + "]"


def _get(node, key: str):
    """(key node, value node) of ``key`` in a pyyaml MappingNode, or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _end(node) -> int:
    """Text index just after ``node``'s content (a block collection's own end mark lies past the
    comments and indentation that follow it)."""
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _end(node.value[-1])
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _end(node.value[-1][1])
    return node.end_mark.index


def _line_end(text: str, i: int) -> int:
    """Index of the line break ending the line of position ``i`` (len(text) if none)."""
    j = text.find("\n", i)
    if j < 0:
        return len(text)
    return j - 1 if j > 0 and text[j - 1] == "\r" else j


def _replace_value(key, val, new: str) -> Tuple[int, int, str]:
    if isinstance(val, yaml.CollectionNode) and not val.flow_style and val.value:
        # a block list on the following lines: "key: [..]" instead (comments in it are dropped)
        return key.end_mark.index, _end(val), ": " + new
    return val.start_mark.index, val.end_mark.index, new


def _edit_text(text: str, k: int, target: Optional[Sequence[float]],
               start: Optional[Sequence[float]]) -> Optional[str]:
    """``text`` with condition ``k``'s target and/or start pose set (``k`` == the number of
    conditions: appended, with a target), or None if the layout is not one this edit handles.
    The caller verifies the result."""
    nl = "\r\n" if "\r\n" in text else "\n"
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    agent = _get(root, "agent")
    conds = _get(agent[1], "conditions") if agent else None
    if conds is None or not isinstance(conds[1], yaml.SequenceNode):
        return None
    seq = conds[1]
    edits: List[Tuple[int, int, str]] = []        # (start, end, replacement)
    if k == len(seq.value):                       # append a condition
        new = f"target: {_flow(target)}"
        if seq.flow_style:
            close = seq.end_mark.index - 1
            if text[close] != "]":
                return None
            extra = f", start_joint_positions: {_flow(start)}" if start is not None else ""
            edits.append((close, close, f", {{{new}{extra}}}"))
        else:
            last = seq.value[-1]
            s = last.start_mark
            prefix = text[s.index - s.column:s.index].rstrip()
            if not prefix.endswith("-") or prefix[:-1].strip():
                return None                       # not "<indent>- item" on one line
            indent = prefix[:-1]
            item = f"{nl}{indent}- {new}"
            if start is not None:
                item += f"{nl}{indent}  start_joint_positions: {_flow(start)}"
            at = _line_end(text, _end(last))
            edits.append((at, at, item))
    else:
        cond = seq.value[k]
        found = _get(cond, "target")
        if found is None:
            return None
        if target is not None:
            edits.append(_replace_value(*found, _flow(target)))
        if start is not None:
            have = _get(cond, "start_joint_positions")
            if have is not None:
                edits.append(_replace_value(*have, _flow(start)))
            elif cond.flow_style:
                close = cond.end_mark.index - 1
                if text[close] != "}":
                    return None
                edits.append((close, close, f", start_joint_positions: {_flow(start)}"))
            else:
                key = found[0]
                at = _line_end(text, _end(found[1]))
                edits.append((at, at, f"{nl}{' ' * key.start_mark.column}start_joint_positions: "
                                      f"{_flow(start)}"))
    for a, b, new in sorted(edits, key=lambda e: e[0], reverse=True):
        text = text[:a] + new + text[b:]
    return text


def set_condition(path: Path, k: int, target: Optional[Sequence[float]] = None,
                  start: Optional[Sequence[float]] = None, dry_run: bool = False) -> Tuple[str, bool]:
    """Write condition ``k``'s target and/or start pose into the config file ``path`` (``k`` ==
    the number of conditions appends one, which needs a target).

    Returns (the new text, whether comments were kept).  Raises :class:`TargetsError` for a bad
    ``k`` or a result that would not validate (the file is then left as it was)."""
    from gps_ros.config import ConfigError, parse_config

    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as err:
        raise TargetsError(f"cannot read {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
        parse_config(data, str(path))
    except yaml.YAMLError as err:
        raise TargetsError(f"config error in {path}: malformed YAML: "
                           f"{getattr(err, 'problem', None) or err}") from None
    except ConfigError as err:
        raise TargetsError(str(err)) from None
    n = len(data["agent"]["conditions"])
    if not 0 <= k <= n:
        raise TargetsError(f"--condition {k} is out of range: {path} has {n} conditions "
                           f"(0-{n - 1}; {n} appends a new one)")
    if k == n and target is None:
        raise TargetsError(f"condition {k} does not exist yet: record its target first "
                           "(without --start)")
    if target is None and start is None:
        raise TargetsError("nothing to write: give a target or a start pose")
    target = [float(v) for v in target] if target is not None else None
    start = [float(v) for v in start] if start is not None else None

    expected = copy.deepcopy(data)
    conds = expected["agent"]["conditions"]
    if k == n:
        conds.append({"target": target})
    elif target is not None:
        conds[k] = dict(conds[k], target=target)
    if start is not None:
        conds[k] = dict(conds[k])
        conds[k]["start_joint_positions"] = start

    try:
        new = _edit_text(text, k, target, start)
        kept = new is not None and yaml.safe_load(new) == expected
    except yaml.YAMLError:
        kept = False
    if not kept:
        new = yaml.safe_dump(expected, sort_keys=False, default_flow_style=None)
    try:
        parse_config(yaml.safe_load(new), str(path))
    except ConfigError as err:
        raise TargetsError(f"not written, the result would be invalid: {err}") from None
    if not dry_run:
        try:
            # through a symlink to the file it names; the file keeps its permissions
            atomic_write_bytes(Path(os.path.realpath(path)), new.encode("utf-8"))
        except OSError as err:
            raise TargetsError(f"cannot write {path}: {err.strerror or err}") from None
    return new, kept


# --- commands --------------------------------------------------------------------------------------
def _fmt(values, digits: int = 3) -> str:
    return "[" + ", ".join(f"{round(float(v), digits) + 0.0:.{digits}f}" for v in values) + "]"


def _warn(msg: str) -> None:
    print(f"gps-ros: warning: {msg}", file=sys.stderr)


def _load(path: Path):
    from gps_ros.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        raise TargetsError(str(err)) from None


def _read_live(args, joint_names) -> np.ndarray:
    try:
        from gps_ros.ros.read_joints import NoJointStates, read_joint_positions

        try:
            q, qd = read_joint_positions(args.topic, joint_names, args.timeout)
        except NoJointStates as err:
            raise TargetsError(str(err), code=1) from None
    except ImportError as err:
        raise TargetsError(f"reading {args.topic} needs ROS 2 ({err.name or err}): source ROS 2 "
                           "(e.g. /opt/ros/jazzy/setup.bash) or pass --joints q1 ... qn") from None
    if qd is not None and np.isfinite(qd).all() and np.abs(qd).max() > 0.05:
        _warn(f"the arm is moving (|joint velocity| up to {np.abs(qd).max():.2f} rad/s)")
    return q


def record(args) -> int:
    if args.timeout <= 0:
        raise TargetsError("--timeout must be positive")
    if args.condition < 0:
        raise TargetsError("--condition must be >= 0")
    cfg = _load(args.config)
    task = task_model(cfg.agent, args.urdf)
    names = list(task.joint_names)
    if args.joints is not None:
        if len(args.joints) != len(names):
            raise TargetsError(f"--joints needs {len(names)} values (one per joint of "
                               f"agent.robot.joints: {' '.join(names)}), got {len(args.joints)}")
        q = np.asarray(args.joints, dtype=np.float64)
    have = len(cfg.agent.conditions)
    if args.condition > have:   # before waiting for the robot
        raise TargetsError(f"--condition {args.condition} is out of range: {args.config} has "
                           f"{have} conditions (0-{have - 1}; {have} appends a new one)")
    if args.start and args.condition == have:
        raise TargetsError(f"condition {have} does not exist yet: record its target first "
                           "(without --start)")
    if args.joints is None:
        q = _read_live(args, names)
    point, warnings = ee_position(cfg.agent, q, task=task)
    for w in warnings:
        _warn(w)
    if args.start:
        _, kept = set_condition(args.config, args.condition, start=q, dry_run=args.dry_run)
    else:
        _, kept = set_condition(args.config, args.condition, target=point, dry_run=args.dry_run)
    if not kept and not args.dry_run:
        _warn(f"could not edit {args.config} in place: rewrote the whole file, its comments "
              "and formatting are lost")
    dry = " (dry run: not written)" if args.dry_run else ""
    if args.start:
        print(f"condition {args.condition} start_joint_positions <- {_fmt(q)} (EE at "
              f"{_fmt(point)}) in {args.config}{dry}")
    else:
        new = " (new)" if args.condition == have else ""
        print(f"condition {args.condition}{new} target <- {_fmt(point)} (from joints {_fmt(q)}) "
              f"in {args.config}{dry}")
    return 0


def show(args) -> int:
    cfg = _load(args.config)
    agent = cfg.agent
    print(f"{args.config}: {len(agent.conditions)} conditions (EE point {_fmt(agent.ee_points[0])}"
          f" of {agent.robot.ee_link}, in {agent.robot.base_link or 'the URDF root'}'s frame, m)")
    try:
        task = task_model(agent)
    except TargetsError:
        task = None
    for i, c in enumerate(agent.conditions):
        q0 = c.start_joint_positions if c.start_joint_positions is not None else agent.start_joint_positions
        own = "" if c.start_joint_positions is not None else " (agent default)"
        dist = ""
        if task is not None:
            try:
                p0, _ = ee_position(agent, q0, task=task)
                dist = f", start EE {_fmt(p0)} is {np.linalg.norm(np.asarray(c.target) - p0):.3f} m away"
            except TargetsError:
                pass
        print(f"  condition {i}: target {_fmt(c.target)}, start {_fmt(q0)}{own}{dist}")
    if agent.target_region is not None:
        print(f"  held-out target region: {_fmt(agent.target_region.low)} .. "
              f"{_fmt(agent.target_region.high)}")
    return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``targets`` subcommand's arguments (``gps_ros.cli`` adds the parser)."""
    sub = ap.add_subparsers(dest="targets_command", required=True)
    rec = sub.add_parser("record", help="store the arm's current EE position as a condition's "
                         "target (move the arm there by hand first)")
    rec.add_argument("--config", type=Path, required=True, help="experiment YAML to edit")
    rec.add_argument("--condition", type=int, required=True, metavar="K",
                     help="condition index; the number of conditions appends a new one")
    rec.add_argument("--joints", type=float, nargs="+", metavar="Q",
                     help="joint positions (rad / m) of agent.robot.joints, in that order, instead "
                     "of reading --topic (offline use)")
    rec.add_argument("--topic", default="/joint_states",
                     help="sensor_msgs/JointState topic to read one message from (needs ROS 2)")
    rec.add_argument("--timeout", type=float, default=5.0, help="s to wait for that message")
    rec.add_argument("--urdf", help="the robot's URDF file in place of the config's "
                     "agent.robot.urdf (its links and joints as the config names them)")
    rec.add_argument("--start", action="store_true",
                     help="record the joints as the condition's start_joint_positions instead "
                     "of its target (move the arm to the start pose first)")
    rec.add_argument("--dry-run", action="store_true", help="compute and print, write nothing")
    sh = sub.add_parser("show", help="list the conditions' targets and start poses")
    sh.add_argument("--config", type=Path, required=True, help="experiment YAML")


def main(args) -> int:
    """Run ``gps-ros targets ...`` (parsed by :func:`add_arguments`); returns the exit code."""
    try:
        return record(args) if args.targets_command == "record" else show(args)
    except TargetsError as err:
        print(f"gps-ros: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("gps-ros: interrupted; nothing written", file=sys.stderr)
        return 130
