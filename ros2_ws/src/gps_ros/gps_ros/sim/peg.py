"""Peg insertion in PyBullet: a peg held rigidly in the robot's hand, a block with a square hole.

The geometry (``agent.peg``, :class:`gps_ros.config.PegConfig`):

* **Peg**: a cylinder of ``radius`` and ``length``, added to the robot as one more link
  (``peg``, fixed joint to ``agent.robot.ee_link``, the grasp frame) by appending that link to the
  robot's URDF text (:func:`with_peg`).  A link of the arm and not a second body held by a constraint: the grip is exactly
  rigid (a fixed constraint is solved softly and lets the peg slip under contact forces), and the
  arm stays the only body with mass, so ``gravity_update: world`` (gravity compensation by
  switching gravity off) still holds; it then also compensates the peg's weight, as a real arm
  configured with the payload does.  The peg runs along the grasp frame's z axis (out of the
  gripper) from ``-grip`` (inside the hand) to ``tip`` (the tip, ``tip`` metres past the
  grasp point).  A gripper's fingers close on it where the config holds them there
  (``agent.held_joints``).
* **Block**: a static body (mass 0) of four walls and a floor around a square hole of side
  ``2 (radius + clearance)`` and depth ``hole_depth``; the block's outer side is ``block_size``.
  A condition's ``target`` is the centre of the hole's opening (top face), so conditions are hole
  positions on the table; the block is moved there on reset.  With ``chamfer`` > 0 the opening
  is a 45° funnel: ``chamfer`` wider on each side at the top face, narrowing to the hole's side
  ``chamfer`` below it (the entry chamfer of machined holes, which turns a small lateral error into
  a slide into the bore instead of a landing on the top face).
* **Table**: a static slab with its top at z = 0 (the robot's base plane) in front of the robot.

The cost and the state refer to the *full-insertion* pose: the EE origin's target is where the
grasp frame is when the peg tip touches the hole's floor in the condition's start orientation
(``hole bottom − R0 · tip``), so the EE points on the peg (tip, shaft) are all at zero in the state
exactly at full insertion.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import pybullet as p

PEG_RGBA = (0.15, 0.8, 0.25, 1.0)     # green: unlike the gripper, block, table and arm
BLOCK_RGBA = (0.85, 0.55, 0.15, 1.0)
TABLE_RGBA = (0.55, 0.42, 0.30, 1.0)


def peg_inertia(cfg) -> Tuple[float, float, float]:
    """The peg's principal moments of inertia as PyBullet's URDF importer derives them from its
    collision cylinder (a box approximation with the collision margin): the published peg results
    were measured with these, when the simulator still let PyBullet derive every link's inertia."""
    import os
    import tempfile

    r, length, m = float(cfg.radius), float(cfg.tip) + float(cfg.grip), float(cfg.mass)
    urdf = (f'<robot name="peg"><link name="peg"><inertial><mass value="{m!r}"/>'
            '<inertia ixx="1" ixy="0" ixz="0" iyy="1" iyz="0" izz="1"/></inertial>'
            f'<collision><geometry><cylinder radius="{r!r}" length="{length!r}"/></geometry>'
            '</collision></link></robot>')
    fd, path = tempfile.mkstemp(suffix=".urdf", prefix="gps_ros_peg_")
    cid = p.connect(p.DIRECT)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(urdf)
        body = p.loadURDF(path, physicsClientId=cid)
        inertia = p.getDynamicsInfo(body, -1, physicsClientId=cid)[2]
    finally:
        os.unlink(path)
        p.disconnect(physicsClientId=cid)
    return tuple(float(v) for v in inertia)


def with_peg(urdf: str, ee_link: str, cfg) -> str:
    """The robot's URDF text with the peg appended as a link fixed to ``ee_link`` (the grasp
    frame): a cylinder along the frame's z axis from ``-grip`` to ``tip``.  The robot model
    (:class:`gps_ros.task.TaskModel`) and the simulator both use it: the peg is a payload."""
    r, top, tip = float(cfg.radius), -float(cfg.grip), float(cfg.tip)
    length = tip - top
    zc = 0.5 * (tip + top)
    m = float(cfg.mass)
    ixx, iyy, izz = (repr(v) for v in peg_inertia(cfg))
    rgba = " ".join(f"{c:g}" for c in PEG_RGBA)
    peg = f"""
  <link name="peg">
    <contact>
      <lateral_friction value="{cfg.friction:g}"/>
      <spinning_friction value="0.001"/>
    </contact>
    <inertial>
      <origin rpy="0 0 0" xyz="0 0 {zc:.6f}"/>
      <mass value="{m:g}"/>
      <inertia ixx="{ixx}" ixy="0" ixz="0" iyy="{iyy}" iyz="0" izz="{izz}"/>
    </inertial>
    <visual>
      <origin rpy="0 0 0" xyz="0 0 {zc:.6f}"/>
      <geometry><cylinder radius="{r:g}" length="{length:.6f}"/></geometry>
      <material name="peg_green"><color rgba="{rgba}"/></material>
    </visual>
    <collision>
      <origin rpy="0 0 0" xyz="0 0 {zc:.6f}"/>
      <geometry><cylinder radius="{r:g}" length="{length:.6f}"/></geometry>
    </collision>
  </link>
  <joint name="peg_joint" type="fixed">
    <parent link="{ee_link}"/>
    <child link="peg"/>
    <origin rpy="0 0 0" xyz="0 0 0"/>
  </joint>
</robot>"""
    i = urdf.rindex("</robot>")
    return urdf[:i] + peg + urdf[i + len("</robot>"):]


def hole_half_width(cfg) -> float:
    return float(cfg.radius) + float(cfg.clearance)


def build_block(cid: int, cfg) -> int:
    """The block with the hole, a static body whose origin is the centre of the hole's opening."""
    h = hole_half_width(cfg)
    B = 0.5 * float(cfg.block_size)
    d = float(cfg.hole_depth)
    fl = float(cfg.floor)
    ch = float(cfg.chamfer)                # wall and depth left: checked by PegConfig
    I = (0.0, 0.0, 0.0, 1.0)
    # (half extents, centre, orientation) relative to the opening's centre; z runs down into the
    # hole.  The bore walls run from the chamfer's foot down; above it, walls whose inner faces
    # are at h + chamfer and, under each 45° face, a box turned by 45° whose top face is that
    # slope (its other half lies inside the walls: a static compound may overlap itself).
    def walls(hw, top, bottom):  # four walls, inner faces at +-hw, from z = -top to z = -bottom
        w, hz, zc = 0.5 * (B - hw), 0.5 * (bottom - top), -0.5 * (bottom + top)
        c = hw + w
        return [((B, w, hz), (0.0, c, zc), I), ((B, w, hz), (0.0, -c, zc), I),
                ((w, hw, hz), (c, 0.0, zc), I), ((w, hw, hz), (-c, 0.0, zc), I)]

    boxes = walls(h, ch, d) + (walls(h + ch, 0.0, ch) if ch else [])
    if ch:
        s = ch / np.sqrt(2.0)
        qx = tuple(p.getQuaternionFromEuler([np.pi / 4, 0.0, 0.0]))
        qy = tuple(p.getQuaternionFromEuler([0.0, np.pi / 4, 0.0]))
        boxes += [((B, s, s), (0.0, h + ch, -ch), qx), ((B, s, s), (0.0, -h - ch, -ch), qx),
                  ((s, B, s), (h + ch, 0.0, -ch), qy), ((s, B, s), (-h - ch, 0.0, -ch), qy)]
    boxes.append(((B, B, 0.5 * fl), (0.0, 0.0, -d - 0.5 * fl), I))
    half = [list(b[0]) for b in boxes]
    pos = [list(b[1]) for b in boxes]
    orn = [list(b[2]) for b in boxes]
    col = p.createCollisionShapeArray([p.GEOM_BOX] * len(boxes), halfExtents=half,
                                      collisionFramePositions=pos,
                                      collisionFrameOrientations=orn, physicsClientId=cid)
    vis = p.createVisualShapeArray([p.GEOM_BOX] * len(boxes), halfExtents=half,
                                   visualFramePositions=pos, visualFrameOrientations=orn,
                                   rgbaColors=[list(BLOCK_RGBA)] * len(boxes),
                                   physicsClientId=cid)
    body = p.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                             basePosition=[0, 0, -10], physicsClientId=cid)
    p.changeDynamics(body, -1, lateralFriction=float(cfg.friction), restitution=0.0,
                     physicsClientId=cid)
    return body


def build_table(cid: int, cfg, center: Tuple[float, float] = (0.55, 0.0),
                size: Tuple[float, float] = (0.6, 1.0)) -> int:
    """A static slab in front of the robot, top face at z = 0, clear of the robot's base."""
    th = 0.02
    half = [0.5 * size[0], 0.5 * size[1], th]
    col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=cid)
    vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=list(TABLE_RGBA),
                              physicsClientId=cid)
    body = p.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                             basePosition=[center[0], center[1], -th], physicsClientId=cid)
    p.changeDynamics(body, -1, lateralFriction=float(cfg.friction), restitution=0.0,
                     physicsClientId=cid)
    return body


def ee_target(hole_top: np.ndarray, R0: np.ndarray, cfg) -> np.ndarray:
    """The EE origin's position at full insertion: the peg tip on the hole's floor centre."""
    bottom = np.asarray(hole_top, dtype=np.float64) - np.array([0.0, 0.0, float(cfg.hole_depth)])
    return bottom - R0 @ np.array([0.0, 0.0, float(cfg.tip)])


def insertion(tip_rel: np.ndarray, cfg) -> Tuple[np.ndarray, np.ndarray]:
    """(depth, inserted) from the tip's position relative to the hole's floor centre (..., 3).

    ``depth`` is how far the tip is below the opening (m, clipped at 0) if the tip is inside the
    hole's footprint (``|dx|, |dy| <= half width``), else 0; ``inserted`` is depth >= ``success_depth``
    of the hole depth (the issue's 90 %)."""
    tip_rel = np.asarray(tip_rel, dtype=np.float64)
    d = float(cfg.hole_depth)
    h = hole_half_width(cfg)
    inside = (np.abs(tip_rel[..., 0]) <= h) & (np.abs(tip_rel[..., 1]) <= h)
    depth = np.where(inside, np.clip(d - tip_rel[..., 2], 0.0, None), 0.0)
    return depth, depth >= float(cfg.success_depth) * d - 1e-9

