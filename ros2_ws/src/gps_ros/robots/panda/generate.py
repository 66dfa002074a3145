"""Write panda.urdf here: pybullet_data's ``franka_panda/panda.urdf`` with the link inertias that
PyBullet computes from its collision shapes written in.

pybullet_data's Panda carries a placeholder inertia (0.1 kg m² on every axis of every link).
PyBullet ignores a URDF's inertias unless asked to (``URDF_USE_INERTIA_FROM_FILE``) and derives
them from the collision shapes instead; every Panda result of this package was measured with those
derived inertias.  Our simulator uses the URDF's inertias for every robot (so that the rigid-body
model built from the same file is the simulated robot), so the Panda's description states the
derived values explicitly.  Nothing else changes: masses, centres of mass, kinematics, limits;
mesh names point into pybullet_data (resolved there by gps_ros.robot.description).

    python ros2_ws/src/gps_ros/robots/panda/generate.py   # rewrites panda.urdf next to this file
"""
from __future__ import annotations

import re
from pathlib import Path

import pybullet as p
import pybullet_data

SRC = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
OUT = Path(__file__).resolve().parent / "panda.urdf"


def main() -> None:
    text = SRC.read_text()
    cid = p.connect(p.DIRECT)
    body = p.loadURDF(str(SRC), useFixedBase=True, physicsClientId=cid)
    derived = {}
    for j in range(p.getNumJoints(body, physicsClientId=cid)):
        link = p.getJointInfo(body, j, physicsClientId=cid)[12].decode()
        mass, _, inertia, pos, orn = p.getDynamicsInfo(body, j, physicsClientId=cid)[:5]
        assert orn == (0.0, 0.0, 0.0, 1.0), (link, orn)  # the inertial frames are not rotated
        derived[link] = inertia
    p.disconnect(cid)

    def link_block(m: re.Match) -> str:
        block, name = m.group(0), m.group(1)
        if name not in derived or not re.search(r"<inertia\b", block):
            return block
        ixx, iyy, izz = (repr(float(v)) for v in derived[name])
        return re.sub(r"<inertia\b[^>]*/>",
                      f'<inertia ixx="{ixx}" ixy="0" ixz="0" iyy="{iyy}" iyz="0" izz="{izz}"/>', block)

    text = re.sub(r'<link name="([^"]+)">.*?</link>', link_block, text, flags=re.S)
    text = text.replace("package://meshes/", "franka_panda/meshes/")
    header = ("<!-- gps_ros: pybullet_data's franka_panda/panda.urdf with the inertias PyBullet derives "
              "from the collision shapes\n     written in (see generate.py next to this file); "
              "mesh names relative to pybullet_data. -->\n")
    i = text.index("<robot")
    OUT.write_text(text[:i] + header + text[i:])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
