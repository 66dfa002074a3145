"""Capsules (segments with a radius) standing in for a robot's links in the fast camera.

:func:`robot_capsules` gives the capsules of a robot: those of a file ``<urdf stem>.capsules.yaml``
next to its URDF where there is one (fitted by hand, e.g. the Panda's to its visual meshes), else
capsules fitted to the URDF's collision geometry (:func:`fit_capsules`).  Points are in the URDF
frame of each link (metres), radii before the camera's ``radius_scale``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import yaml

from gps_ros.robot.description import RobotDescription, RobotError

#: colours of the fitted capsules: a light grey arm, a darker base, a blue hand (the links at and
#: below the EE link's parent) so that the end effector stands out
ARM_RGB = (0.86, 0.86, 0.84)
BASE_RGB = (0.55, 0.55, 0.55)
HAND_RGB = (0.25, 0.45, 0.90)


@dataclass(frozen=True)
class Capsule:
    """A segment ``a``-``b`` (link frame, m) with a radius (m), drawn in colour ``rgb``."""

    link: str
    a: Tuple[float, float, float]
    b: Tuple[float, float, float]
    radius: float
    rgb: Tuple[float, float, float] = ARM_RGB


@dataclass(frozen=True)
class CapsuleSet:
    """A robot's capsules and the factor the camera scales their radii by."""

    capsules: Tuple[Capsule, ...]
    radius_scale: float = 1.0


def capsule_file(description: RobotDescription) -> Optional[Path]:
    """``<urdf stem>.capsules.yaml`` next to the robot's URDF, if there is one."""
    if description.path is None:
        return None
    f = description.path.with_suffix(".capsules.yaml")
    return f if f.is_file() else None


def load_capsules(path: Path, description: Optional[RobotDescription] = None) -> CapsuleSet:
    """Read a capsule file (see :func:`save_capsules`); links are checked against ``description``."""
    data = yaml.safe_load(Path(path).read_text())
    try:
        caps = tuple(Capsule(str(c["link"]), tuple(map(float, c["a"])), tuple(map(float, c["b"])),
                             float(c["radius"]), tuple(map(float, c.get("rgb", ARM_RGB))))
                     for c in data["capsules"])
        scale = float(data.get("radius_scale", 1.0))
    except (KeyError, TypeError, ValueError) as err:
        raise RobotError(f"capsule file {path}: malformed ({err})") from None
    if description is not None:
        bad = sorted({c.link for c in caps} - set(description.links))
        if bad:
            raise RobotError(f"capsule file {path}: links {bad} are not in {description.source}")
    return CapsuleSet(caps, scale)


def save_capsules(path: Path, capsules: CapsuleSet, header: str = "") -> None:
    """Write a capsule file: ``radius_scale`` and one line per capsule."""
    f = lambda v: "[" + ", ".join(repr(float(x)) for x in v) + "]"  # noqa: E731
    lines = [f"# {ln}" for ln in header.splitlines()]
    lines += [f"radius_scale: {capsules.radius_scale!r}", "capsules:"]
    lines += [f"  - {{link: {c.link}, a: {f(c.a)}, b: {f(c.b)}, radius: {c.radius!r}, rgb: {f(c.rgb)}}}"
              for c in capsules.capsules]
    Path(path).write_text("\n".join(lines) + "\n")


def robot_capsules(description: RobotDescription) -> CapsuleSet:
    """The capsules of a robot (see the module docstring)."""
    f = capsule_file(description)
    if f is not None:
        return load_capsules(f, description)
    return fit_capsules(description)


def fit_capsules(description: RobotDescription) -> CapsuleSet:
    """Capsules fitted to the URDF's collision geometry."""
    raise RobotError(f"{description.source}: no capsules for the fast camera (fitting to the "
                     "collision geometry is not available yet)")
