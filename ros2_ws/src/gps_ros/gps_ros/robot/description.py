"""A robot description: the URDF found, read and checked against the ``agent.robot`` section.

Where a URDF may come from (``agent.robot.urdf``, :func:`resolve_urdf`):

* URDF text itself (a ``robot_description`` parameter or topic, as robot_state_publisher has it);
* ``package://<pkg>/<path>``: the package's share directory from the ament index
  (:func:`package_share`): every prefix of ``AMENT_PREFIX_PATH`` (a sourced ROS 2 workspace), plus
  the ament index that the ``cmeel`` wheels of PyPI install (``example-robot-data`` registers its
  robots there), and this package's own data (``package://gps_ros/robots/...``) however it was
  installed; else a clear error;
* ``file://<absolute path>``, an absolute path, a path relative to the config file, or a path
  inside ``pybullet_data`` (``kuka_iiwa/model.urdf``), tried in that order.

Mesh file names inside the URDF are made absolute once, so that PyBullet and Pinocchio load the
text from anywhere: ``package://`` through the ament index, else (PyBullet's own convention)
relative to the URDF's directory; relative names relative to the URDF's directory, else inside
``pybullet_data``.  Meshes that cannot be found are listed in :attr:`RobotDescription.missing_meshes`
(kinematics and dynamics need no mesh; the simulator refuses such a description).

:class:`RobotDescription` checks the chain: ``base_link`` and ``ee_link`` are links of the URDF,
``base_link`` is an ancestor of ``ee_link`` and fixed to the URDF's root, the controlled joints
(default: the movable joints on the chain base -> ee, in chain order) are movable joints whose
motion moves ``ee_link``, and every other movable joint is *held* at a fixed position (a gripper's
fingers; ``agent.held_joints``, default 0 clipped into the joint's limits).  Each problem is one
:class:`RobotError` line naming what is wrong.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

COMMAND_MODES = ("effort", "velocity", "position")
MOVABLE = ("revolute", "continuous", "prismatic")


class RobotError(ValueError):
    """A robot description problem, as one line."""


# --- the ament index -------------------------------------------------------------------------------
def ament_prefixes() -> List[Path]:
    """Install prefixes whose ``share/ament_index`` is searched for ``package://`` URIs: those of
    ``AMENT_PREFIX_PATH`` (a sourced ROS 2 workspace), then the ``cmeel.prefix`` of this Python's
    site-packages (where PyPI's ``example-robot-data`` and ``pin`` wheels register themselves)."""
    out = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for site in sys.path:
        c = Path(site) / "cmeel.prefix"
        if site and c.is_dir() and c not in out:
            out.append(c)
    return out


def package_share(package: str) -> Optional[Path]:
    """The share directory of an ament package, or None when no prefix registers it.  This
    package's own (``package://gps_ros/robots/...``) is found without the ament index too, where
    it was installed with pip."""
    for prefix in ament_prefixes():
        if (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).is_file():
            return prefix / "share" / package
    if package == "gps_ros":
        from gps_ros.paths import share_path

        return share_path("robots").parent
    return None


def _pybullet_data() -> Optional[Path]:
    try:
        import pybullet_data
    except ImportError:  # pragma: no cover - pybullet is a dependency
        return None
    return Path(pybullet_data.getDataPath())


def resolve_package_uri(uri: str) -> Path:
    """``package://pkg/path`` -> the file in ``pkg``'s share directory; :class:`RobotError` if
    ``pkg`` is in no ament index."""
    rest = uri[len("package://"):]
    pkg, _, path = rest.partition("/")
    share = package_share(pkg)
    if share is None:
        where = ", ".join(str(p) for p in ament_prefixes()) or "none"
        raise RobotError(f"{uri}: package {pkg!r} is not in the ament index (prefixes searched: "
                         f"{where}); source the ROS 2 workspace that installs it, or give a file path")
    return share / path


# --- finding the URDF ------------------------------------------------------------------------------
def resolve_urdf(spec: str, base_dir: Optional[Path] = None) -> Tuple[str, Optional[Path], str]:
    """Read a URDF named as in the module docstring.

    Returns (URDF text, its file or None for inline text, a short name of the source for
    messages)."""
    spec = str(spec).strip()
    if not spec:
        raise RobotError("no URDF given")
    if spec.startswith("<"):
        return spec, None, "robot_description"
    if spec.startswith("package://"):
        path = resolve_package_uri(spec)
        if not path.is_file():
            raise RobotError(f"{spec}: no such file {path}")
    else:
        name = spec[len("file://"):] if spec.startswith("file://") else spec
        p = Path(os.path.expanduser(name))
        candidates = [p] if p.is_absolute() else [(base_dir or Path.cwd()) / p]
        data = _pybullet_data()
        if not p.is_absolute() and data is not None:
            candidates.append(data / p)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise RobotError(f"{spec}: no such file (looked in {', '.join(str(c) for c in candidates)})")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise RobotError(f"{spec}: cannot read {path}: {err}") from None
    return text, path.resolve(), spec


def _mesh_path(name: str, urdf_dir: Optional[Path]) -> Optional[Path]:
    """The file a URDF mesh name refers to, or None (see the module docstring)."""
    data = _pybullet_data()
    if name.startswith("package://"):
        try:
            p = resolve_package_uri(name)
            if p.is_file():
                return p
        except RobotError:
            pass
        rel = Path(name[len("package://"):])
        roots = [urdf_dir]
    elif name.startswith("file://"):
        p = Path(name[len("file://"):])
        return p if p.is_file() else None
    else:
        rel = Path(name)
        if rel.is_absolute():
            return rel if rel.is_file() else None
        roots = [urdf_dir, data]
    for root in roots:
        if root is not None and (root / rel).is_file():
            return root / rel
    return None


# --- the description -------------------------------------------------------------------------------
@dataclass(frozen=True)
class JointInfo:
    """One joint of the URDF."""

    name: str
    type: str
    parent: str
    child: str
    lower: float = -math.inf
    upper: float = math.inf
    velocity: float = math.inf
    effort: float = math.inf
    has_limit: bool = False
    xyz: Tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def movable(self) -> bool:
        return self.type in MOVABLE


@dataclass(frozen=True)
class RobotDescription:
    """A checked robot: the URDF text (mesh paths absolute) and the chain the task uses.

    Attributes:
        urdf: URDF XML with absolute mesh file names.
        source: where it came from (for messages).
        base_link, ee_link: the chain's ends; positions are given in ``base_link``'s frame.
        joints: the controlled joints, in command order.
        command: ``effort`` | ``velocity`` | ``position``.
        held: positions of the other movable joints, which are held still.
        joint_info: every joint of the URDF by name.
        links: every link name, in document order.
        root: the URDF's root link.
        missing_meshes: mesh names that could not be found.
        path: the URDF file (None for URDF text).
    """

    urdf: str
    source: str
    base_link: str
    ee_link: str
    joints: Tuple[str, ...]
    command: str
    held: Mapping[str, float]
    joint_info: Mapping[str, JointInfo]
    links: Tuple[str, ...]
    root: str
    missing_meshes: Tuple[str, ...] = field(default_factory=tuple)
    path: Optional[Path] = None

    @property
    def n(self) -> int:
        return len(self.joints)

    def limits(self):
        """The controlled joints' :class:`~gps_ros.safety.SafetyLimits` (URDF ``<limit>``; a
        continuous joint has no position limits)."""
        from gps_ros.safety import SafetyLimits

        info = [self.joint_info[j] for j in self.joints]
        return SafetyLimits(self.joints, [i.lower for i in info], [i.upper for i in info],
                            [i.velocity for i in info], [i.effort for i in info])

    def joint_lower(self):
        import numpy as np

        return np.array([self.joint_info[j].lower for j in self.joints])

    def joint_upper(self):
        import numpy as np

        return np.array([self.joint_info[j].upper for j in self.joints])

    def parent_joint(self, link: str) -> Optional[JointInfo]:
        return next((j for j in self.joint_info.values() if j.child == link), None)

    def chain(self, link: str) -> List[JointInfo]:
        """The joints from the root down to ``link``, root first."""
        out = []
        j = self.parent_joint(link)
        while j is not None:
            out.append(j)
            j = self.parent_joint(j.parent)
        return out[::-1]

    def descendants(self, link: str) -> List[str]:
        """``link`` and every link below it."""
        out, todo = [], [link]
        while todo:
            ln = todo.pop()
            out.append(ln)
            todo += [j.child for j in self.joint_info.values() if j.parent == ln]
        return out

    def with_urdf(self, urdf: str) -> "RobotDescription":
        """The same chain on an extended URDF (e.g. a tool link appended to the EE link)."""
        out = parse_description(urdf, self.source, self.base_link, self.ee_link,
                                list(self.joints), self.command, dict(self.held), None)
        return dataclasses.replace(out, path=self.path)


def _float(v, default: float) -> float:
    return default if v is None else float(v)


def _parse_joints(root: ET.Element, source: str) -> Dict[str, JointInfo]:
    joints = {}
    for j in root.findall("joint"):
        name, jtype = j.get("name"), j.get("type", "")
        parent, child = j.find("parent"), j.find("child")
        if name is None or parent is None or child is None:
            raise RobotError(f"{source}: a <joint> lacks a name, <parent> or <child>")
        lim = j.find("limit")
        kw = {}
        if lim is not None:
            try:
                kw = dict(velocity=_float(lim.get("velocity"), math.inf),
                          effort=_float(lim.get("effort"), math.inf), has_limit=True)
                if jtype in ("revolute", "prismatic"):
                    kw.update(lower=_float(lim.get("lower"), 0.0), upper=_float(lim.get("upper"), 0.0))
            except ValueError:
                raise RobotError(f"{source}: joint {name!r} has a non-numeric <limit> "
                                 f"{dict(lim.attrib)}") from None
        origin = j.find("origin")
        if origin is not None and origin.get("xyz"):
            try:
                kw["xyz"] = tuple(float(v) for v in origin.get("xyz").split())
            except ValueError:
                raise RobotError(f"{source}: joint {name!r} has a non-numeric origin "
                                 f"{origin.get('xyz')!r}") from None
        joints[name] = JointInfo(name, jtype, parent.get("link", ""), child.get("link", ""), **kw)
    return joints


def parse_description(urdf: str, source: str, base_link: Optional[str], ee_link: str,
                      joints: Optional[Sequence[str]], command: str,
                      held: Optional[Mapping[str, float]], path: Optional[Path],
                      key: str = "agent.robot") -> RobotDescription:
    """Check ``urdf`` against the chain asked for and return the :class:`RobotDescription`.

    ``key`` prefixes the one-line errors (the config section they belong to)."""
    if command not in COMMAND_MODES:
        raise RobotError(f"{key}.command: must be one of {', '.join(COMMAND_MODES)}, got {command!r}")
    if re.search(r"<\s*xacro:", urdf):
        raise RobotError(f"{key}.urdf: {source} is a xacro file; expand it first "
                         "(xacro robot.urdf.xacro > robot.urdf)")
    try:
        root = ET.fromstring(urdf)
    except ET.ParseError as err:
        raise RobotError(f"{key}.urdf: {source} is not valid XML: {err}") from None
    if root.tag != "robot":
        raise RobotError(f"{key}.urdf: {source} has root <{root.tag}>, expected <robot>")
    links = tuple(ln.get("name") for ln in root.findall("link"))
    if not links:
        raise RobotError(f"{key}.urdf: {source} has no <link>")
    info = _parse_joints(root, f"{key}.urdf: {source}")
    children = {j.child for j in info.values()}
    roots = [ln for ln in links if ln not in children]
    if len(roots) != 1:
        raise RobotError(f"{key}.urdf: {source} must be one tree with one root link, has roots {roots}")
    for j in info.values():
        for ln in (j.parent, j.child):
            if ln not in links:
                raise RobotError(f"{key}.urdf: joint {j.name!r} names link {ln!r}, which is not defined")

    def need_link(k: str, name: str) -> None:
        if name not in links:
            raise RobotError(f"{key}.{k}: link {name!r} is not in {source} (links: {', '.join(links)})")

    base_link = base_link or roots[0]
    need_link("base_link", base_link)
    need_link("ee_link", ee_link)
    desc = RobotDescription(urdf, source, base_link, ee_link, (), command, {}, info, links, roots[0])
    to_base = desc.chain(base_link)
    moving = [j.name for j in to_base if j.movable]
    if moving:
        raise RobotError(f"{key}.base_link: {base_link!r} moves relative to the URDF root "
                         f"{roots[0]!r} (joints {moving}); name a link fixed to the root")
    chain = desc.chain(ee_link)
    if ee_link != base_link and base_link not in [j.parent for j in chain]:
        raise RobotError(f"{key}.ee_link: {ee_link!r} is not below base_link {base_link!r} in {source}")
    on_chain = [j.name for j in chain[len(to_base):] if j.movable]
    movable = [j.name for j in info.values() if j.movable]
    if joints is None:
        joints = on_chain
        if not joints:
            raise RobotError(f"{key}.joints: no movable joint between {base_link!r} and {ee_link!r}")
    joints = list(joints)
    for jn in joints:
        if jn not in info:
            raise RobotError(f"{key}.joints: joint {jn!r} is not in {source} (movable joints: "
                             f"{', '.join(movable)})")
        if not info[jn].movable:
            raise RobotError(f"{key}.joints: joint {jn!r} is {info[jn].type}, not movable")
        if jn not in on_chain:
            raise RobotError(f"{key}.joints: joint {jn!r} does not move {ee_link!r} (the joints "
                             f"between {base_link!r} and {ee_link!r}: {', '.join(on_chain)})")
    if len(set(joints)) != len(joints):
        raise RobotError(f"{key}.joints: a joint is listed twice: {joints}")
    for jn in joints:
        ji = info[jn]
        if not ji.has_limit or not (math.isfinite(ji.velocity) and math.isfinite(ji.effort)):
            raise RobotError(f"{key}.joints: joint {jn!r} needs a <limit> with effort and velocity "
                             "in the URDF (the safety filter clamps to them)")
    held = dict(held or {})
    for jn in held:
        if jn not in info or not info[jn].movable:
            raise RobotError(f"agent.held_joints: {jn!r} is not a movable joint of {source}")
        if jn in joints:
            raise RobotError(f"agent.held_joints: {jn!r} is a controlled joint (agent.robot.joints)")
    for jn in movable:
        if jn in joints:
            continue
        ji = info[jn]
        lo, hi = (ji.lower, ji.upper) if ji.type != "continuous" else (-math.inf, math.inf)
        v = float(held.get(jn, min(max(0.0, lo), hi)))
        if not lo - 1e-9 <= v <= hi + 1e-9:
            raise RobotError(f"agent.held_joints: {jn} = {v} is outside its limits [{lo}, {hi}]")
        held[jn] = v
    urdf, missing = _absolute_meshes(urdf, None if path is None else path.parent)
    return RobotDescription(urdf, source, base_link, ee_link, tuple(joints), command, held, info,
                            links, roots[0], tuple(missing), path)


def freeze_joints(urdf: str, positions: Mapping[str, float]) -> str:
    """The URDF with the named movable joints turned into fixed joints at the given positions
    (the motion folded into the joint's origin): the held joints of a robot model."""
    if not positions:
        return urdf
    import numpy as np
    from scipy.spatial.transform import Rotation

    root = ET.fromstring(urdf)
    for j in root.findall("joint"):
        name = j.get("name")
        if name not in positions:
            continue
        v = float(positions[name])
        origin = j.find("origin")
        if origin is None:
            origin = ET.SubElement(j, "origin")
        xyz = np.array([float(a) for a in (origin.get("xyz") or "0 0 0").split()])
        R = Rotation.from_euler("xyz", [float(a) for a in (origin.get("rpy") or "0 0 0").split()])
        ax = j.find("axis")
        axis = np.array([float(a) for a in (ax.get("xyz") if ax is not None else "1 0 0").split()])
        axis = axis / np.linalg.norm(axis)
        if j.get("type") == "prismatic":
            xyz = xyz + R.apply(axis * v)
        else:
            R = R * Rotation.from_rotvec(axis * v)
        origin.set("xyz", " ".join(repr(float(a)) for a in xyz))
        origin.set("rpy", " ".join(repr(float(a)) for a in R.as_euler("xyz")))
        j.set("type", "fixed")
    return ET.tostring(root, encoding="unicode")


def massless_without_inertial(urdf: str) -> str:
    """The URDF with an explicit zero-mass ``<inertial>`` in every link that has none: massless,
    as the URDF specification and Pinocchio read such a link (PyBullet's importer would give it
    1 kg and a unit inertia: a phantom payload on a tool frame such as the xArm7's link_eef)."""
    root = ET.fromstring(urdf)
    missing = [ln for ln in root.findall("link") if ln.find("inertial") is None]
    if not missing:
        return urdf
    for ln in missing:
        inertial = ET.SubElement(ln, "inertial")
        ET.SubElement(inertial, "mass", value="0")
        ET.SubElement(inertial, "inertia", ixx="0", ixy="0", ixz="0", iyy="0", iyz="0", izz="0")
    return ET.tostring(root, encoding="unicode")


_MESH = re.compile(r'(<mesh\b[^>]*\bfilename\s*=\s*)(["\'])(.*?)\2')


def _absolute_meshes(urdf: str, urdf_dir: Optional[Path]) -> Tuple[str, List[str]]:
    missing: List[str] = []

    def sub(m: re.Match) -> str:
        name = m.group(3)
        path = _mesh_path(name, urdf_dir)
        if path is None:
            if name not in missing:
                missing.append(name)
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{path.resolve()}{m.group(2)}"

    return _MESH.sub(sub, urdf), missing


def mesh_uris(urdf: str) -> str:
    """``urdf`` with its absolute mesh file names as ``file://`` URIs, the form viewers (rviz2's
    resource_retriever, Foxglove) load; other names are kept."""
    def sub(m: re.Match) -> str:
        name = m.group(3)
        return (f"{m.group(1)}{m.group(2)}file://{name}{m.group(2)}" if name.startswith("/")
                else m.group(0))

    return _MESH.sub(sub, urdf)


def load_description(urdf: str, ee_link: str, base_link: Optional[str] = None,
                     joints: Optional[Sequence[str]] = None, command: str = "effort",
                     held: Optional[Mapping[str, float]] = None,
                     base_dir: Optional[Path] = None, key: str = "agent.robot") -> RobotDescription:
    """Find, read and check a URDF (see the module docstring); :class:`RobotError` otherwise."""
    try:
        text, path, source = resolve_urdf(urdf, base_dir)
    except RobotError as err:
        raise RobotError(f"{key}.urdf: {err}") from None
    return parse_description(text, source, base_link, ee_link, joints, command, held, path, key)
