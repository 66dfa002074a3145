"""A fixed RGB camera for the reaching and peg-insertion scenes of any robot (the vision tasks'
image observation).

Two renderers draw the same scene from the same pinhole camera:

* ``"fast"`` (default): an analytic numpy ray caster.  Each link of the robot is approximated by a
  few capsules (segments with a radius, in the link frame: :mod:`gps_ros.robot.capsules`, fitted
  to the URDF's collision geometry, or read from a file next to the URDF, e.g. the Panda's,
  fitted to its visual meshes), placed with the link poses from one ``p.getLinkStates`` call.  The scene object
  (an axis-aligned cube or a sphere), and a finite table top (a horizontal rectangle), are
  intersected exactly.  One ray per pixel through the pixel centre, nearest hit wins (an exact
  per-pixel depth test), Lambert shading with a fixed directional light plus ambient.  All ray-
  primitive tests are batched: the three per-ray dot products are matrix products against the
  fixed per-pixel ray directions (the camera never moves), the rest is element-wise numpy on
  ``(pixels, capsules)`` arrays restricted to the pixels inside the arm's screen bounding box.
  Deterministic (no randomness, no threads, float64 throughout).

  Peg insertion (``sim.peg`` set, :mod:`gps_ros.sim.peg`): the peg is an exact cylinder on the
  robot's ``peg`` link, the block an axis-aligned box at ``sim.target`` (its top face at the
  target's height) with the hole exact (a ray through the opening hits the inner wall or the
  floor, so a peg in the hole shows through the opening), the inside of the hole drawn dark; the
  table is the peg task's table body (a box, read from PyBullet) in place of the
  :class:`~gps_ros.sim.arm.SceneConfig` one.  The hole's opening is a couple of pixels wide at
  64x64, less than one ray per pixel can resolve stably, so its darkening is *anti-aliased*: a
  top-face pixel near the opening is blended towards the hole colour by the fraction of
  ``_HOLE_SS`` x ``_HOLE_SS`` sub-pixel rays that fall into the opening.  The hole then stays
  visible, with sub-pixel position, at any resolution.  Labels: peg -> arm, block -> object.
* ``"tiny"``: PyBullet's TinyRenderer (``p.getCameraImage(..., renderer=ER_TINY_RENDERER)``) on
  the full visual meshes -- the slow reference (about 50 frames/s at 64x64 here).  For the object
  and table to show up in it the simulator must have been built with a
  :class:`~gps_ros.sim.arm.SceneConfig` (which adds visual-only PyBullet bodies for them).

Both use the same view and projection matrices (``p.computeViewMatrix`` /
``p.computeProjectionMatrixFOV``; ``fov`` is the vertical field of view in degrees), so
:meth:`Camera.project` maps world points to the pixel coordinates of either image.  Pixel
convention: ``(u, v)`` = (column, row) with integer values at pixel centres, ``(0, 0)`` the centre
of the top-left pixel (the OpenCV convention).

Measured figures: ``bench/bench_camera.py`` (``--scene peg`` for the peg-insertion scene).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Protocol, Sequence, Tuple

import numpy as np
import pybullet as p


class RenderedSim(Protocol):
    """What the camera reads of a simulator (:class:`gps_ros.sim.arm.ArmSim` has it; the
    camera does not import the simulator, which uses the camera for its ``render``): the robot's
    ``capsules`` (:class:`gps_ros.robot.capsules.CapsuleSet`), its PyBullet ``link_index`` (link
    name -> index) and ``root_pose`` (the URDF root link's world position and rotation).  Optional:
    ``scene`` (a :class:`~gps_ros.sim.arm.SceneConfig` or None: table and object to draw),
    ``scene_bodies`` (``{"object": id, "table": id}``, the visual bodies TinyRenderer labels; with
    a peg also ``"block"``), and ``peg`` (a :class:`~gps_ros.config.PegConfig` or None: the peg
    insertion scene, see the module docstring)."""

    physics_client: int            # the PyBullet client id
    robot: int                     # the robot's body id
    target: Any                    # (3,) world position of the object (the reach target)
    capsules: Any                  # gps_ros.robot.capsules.CapsuleSet
    link_index: Any                # {link name: PyBullet link index}
    root_pose: Any                 # (position (3,), rotation (3, 3)) of the URDF root link


class _RobotCapsules:
    """One simulated robot's capsules as arrays, and the pose table they index: row 0 the URDF
    root link (fixed, from ``sim.root_pose``), then the links that carry capsules."""

    def __init__(self, sim: "RenderedSim") -> None:
        cs = sim.capsules
        index = dict(sim.link_index)
        links = sorted({index[c.link] for c in cs.capsules if c.link in index})
        self.link_ids = links
        row = {j: i + 1 for i, j in enumerate(links)}
        self.rows = np.array([row[index[c.link]] if c.link in index else 0 for c in cs.capsules])
        self.a = np.array([c.a for c in cs.capsules], dtype=np.float64)
        self.b = np.array([c.b for c in cs.capsules], dtype=np.float64)
        self.r = cs.radius_scale * np.array([c.radius for c in cs.capsules], dtype=np.float64)
        self.rgb = np.array([c.rgb for c in cs.capsules], dtype=np.float64)
        pos, R = sim.root_pose
        self._root = (np.asarray(pos, dtype=np.float64), np.asarray(R, dtype=np.float64))

    def link_poses(self, sim: "RenderedSim") -> Tuple[np.ndarray, np.ndarray]:
        cid, r = sim.physics_client, sim.robot
        states = p.getLinkStates(r, self.link_ids, computeForwardKinematics=1, physicsClientId=cid)
        pos = np.array([self._root[0]] + [s[4] for s in states], dtype=np.float64)
        R = np.empty((len(pos), 3, 3))
        R[0] = self._root[1]
        if states:
            R[1:] = _quats_to_mats(np.array([s[5] for s in states], dtype=np.float64))
        return pos, R


# Segment label values of Camera.segment() / render(..., return_mask=True).
SEG_BACKGROUND, SEG_TABLE, SEG_ARM, SEG_OBJECT = 0, 1, 2, 3

# Peg insertion: the inside of the hole is the block colour times _HOLE_SHADE (a dark region, no
# shading), and the opening's darkening is anti-aliased with _HOLE_SS x _HOLE_SS sub-pixel rays.
_HOLE_SHADE = 0.2
_HOLE_SS = 8


@dataclass
class CameraConfig:
    """A fixed pinhole camera.

    The pose is ``eye``/``target``/``up`` when ``eye`` is given, otherwise PyBullet's orbit
    parameters ``target``/``distance``/``yaw``/``pitch`` (``p.computeViewMatrixFromYawPitchRoll``,
    z up).  ``fov`` is the vertical field of view (degrees).  ``renderer``: ``"fast"`` (the numpy
    ray caster) or ``"tiny"`` (PyBullet's TinyRenderer on the full meshes, the slow reference).
    """

    width: int = 64
    height: int = 64
    fov: float = 50.0
    eye: Optional[Tuple[float, float, float]] = (1.3, 0.8, 1.0)
    target: Tuple[float, float, float] = (0.3, 0.0, 0.35)
    up: Tuple[float, float, float] = (0.0, 0.0, 1.0)
    distance: float = 1.2
    yaw: float = 90.0
    pitch: float = -30.0
    near: float = 0.05
    far: float = 5.0
    renderer: Literal["fast", "tiny"] = "fast"
    light_direction: Tuple[float, float, float] = (0.4, 0.3, 1.0)  # towards the light
    ambient: float = 0.35
    diffuse: float = 0.65
    background: Tuple[int, int, int] = (40, 44, 52)

    def __post_init__(self) -> None:
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not 0.0 < float(self.fov) < 180.0:
            raise ValueError(f"fov must be in (0, 180) degrees, got {self.fov}")
        if not 0.0 < float(self.near) < float(self.far):
            raise ValueError(f"need 0 < near < far, got near={self.near} far={self.far}")
        if self.renderer not in ("fast", "tiny"):
            raise ValueError(f"renderer must be 'fast' or 'tiny', got {self.renderer!r}")


def _quats_to_mats(q: np.ndarray) -> np.ndarray:
    """(n, 4) xyzw quaternions -> (n, 3, 3) rotation matrices."""
    x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    R = np.empty((len(q), 3, 3))
    R[:, 0, 0] = 1 - 2 * (y * y + z * z)
    R[:, 0, 1] = 2 * (x * y - z * w)
    R[:, 0, 2] = 2 * (x * z + y * w)
    R[:, 1, 0] = 2 * (x * y + z * w)
    R[:, 1, 1] = 1 - 2 * (x * x + z * z)
    R[:, 1, 2] = 2 * (y * z - x * w)
    R[:, 2, 0] = 2 * (x * z - y * w)
    R[:, 2, 1] = 2 * (y * z + x * w)
    R[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return R


class Camera:
    """Renders ``(H, W, 3) uint8`` RGB images of a simulator (:class:`RenderedSim`, e.g. a
    :class:`~gps_ros.sim.arm.ArmSim`) from a fixed viewpoint."""

    def __init__(self, cfg: Optional[CameraConfig] = None, **overrides) -> None:
        if cfg is None:
            cfg = CameraConfig(**overrides)
        elif overrides:
            cfg = CameraConfig(**{**cfg.__dict__, **overrides})
        self.cfg = cfg
        self.width, self.height = int(cfg.width), int(cfg.height)
        if cfg.eye is not None:
            self.view_matrix = p.computeViewMatrix(list(cfg.eye), list(cfg.target), list(cfg.up))
        else:
            self.view_matrix = p.computeViewMatrixFromYawPitchRoll(
                list(cfg.target), float(cfg.distance), float(cfg.yaw), float(cfg.pitch), 0.0, 2)
        self.projection_matrix = p.computeProjectionMatrixFOV(
            float(cfg.fov), self.width / self.height, float(cfg.near), float(cfg.far))
        # column-major 16-lists -> row-major 4x4 acting on column vectors
        self._V = np.asarray(self.view_matrix, dtype=np.float64).reshape(4, 4).T
        self._P = np.asarray(self.projection_matrix, dtype=np.float64).reshape(4, 4).T
        self._PV = self._P @ self._V
        # camera frame from the view matrix: rows of R are the camera x (right), y (up), z (back)
        Rcw = self._V[:3, :3]
        self.eye = -Rcw.T @ self._V[:3, 3]
        right, up, back = Rcw[0], Rcw[1], Rcw[2]
        # per-pixel ray directions through the pixel centres (unit, world frame), (H*W, 3)
        ty = 1.0 / self._P[1, 1]  # tan(fov/2)
        tx = 1.0 / self._P[0, 0]
        u = (np.arange(self.width) + 0.5) / self.width * 2.0 - 1.0
        v = 1.0 - (np.arange(self.height) + 0.5) / self.height * 2.0
        uu, vv = np.meshgrid(u * tx, v * ty)
        d = uu.reshape(-1, 1) * right + vv.reshape(-1, 1) * up - back
        self._rays = d / np.linalg.norm(d, axis=1, keepdims=True)
        self._basis = (right, up, back, tx, ty)
        self._rays_T = np.ascontiguousarray(self._rays.T)
        ld = np.asarray(cfg.light_direction, dtype=np.float64)
        self._light = ld / np.linalg.norm(ld)
        self._bg = np.asarray(cfg.background, dtype=np.float64) / 255.0
        self._robots: dict = {}  # (client, robot) -> _RobotCapsules of that simulated robot
        self._peg_links: dict = {}  # (client, robot) -> index of the "peg" link
        self._static_layers: dict = {}  # peg scene geometry -> (depth, rgb, labels) of table + block

    # ------------------------------------------------------------------------------------------
    def project(self, points) -> np.ndarray:
        """World point(s) ``(..., 3)`` -> pixel coordinates ``(..., 2)`` as ``(u, v)`` = (column,
        row), integer at pixel centres; points behind the camera give NaN."""
        X = np.asarray(points, dtype=np.float64)
        flat = X.reshape(-1, 3)
        h = flat @ self._PV[:, :3].T + self._PV[:, 3]
        w = h[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            ndc = h[:, :2] / w[:, None]
        uv = np.empty_like(ndc)
        uv[:, 0] = (ndc[:, 0] + 1.0) * 0.5 * self.width - 0.5
        uv[:, 1] = (1.0 - ndc[:, 1]) * 0.5 * self.height - 0.5
        uv[w <= 0] = np.nan
        return uv.reshape(X.shape[:-1] + (2,))

    def depth_of(self, points) -> np.ndarray:
        """Distance along the camera's viewing axis of world point(s) ``(..., 3)``."""
        X = np.asarray(points, dtype=np.float64)
        return -(X @ self._V[2, :3] + self._V[2, 3])

    # ------------------------------------------------------------------------------------------
    def render(self, sim: "RenderedSim", return_mask: bool = False):
        """RGB image ``(H, W, 3) uint8`` of ``sim``'s current state (and, with ``return_mask``, an
        ``(H, W) uint8`` label image: 0 background, 1 table, 2 arm, 3 object)."""
        if self.cfg.renderer == "tiny":
            rgb, mask = self._render_tiny(sim)
        else:
            rgb, mask = self._render_fast(sim)
        return (rgb, mask) if return_mask else rgb

    def segment(self, sim: "RenderedSim") -> np.ndarray:
        """The ``(H, W) uint8`` label image (see :meth:`render`)."""
        return self.render(sim, return_mask=True)[1]

    # ------------------------------------------------------------------------------------------
    def _render_tiny(self, sim: "RenderedSim"):
        cid = sim.physics_client
        out = p.getCameraImage(self.width, self.height, self.view_matrix, self.projection_matrix,
                               renderer=p.ER_TINY_RENDERER, lightDirection=list(self._light),
                               shadow=0, physicsClientId=cid)
        rgba = np.asarray(out[2], dtype=np.uint8).reshape(self.height, self.width, 4)
        seg = np.asarray(out[4], dtype=np.int64).reshape(self.height, self.width)
        body = np.where(seg >= 0, seg & ((1 << 24) - 1), -1)
        mask = np.zeros((self.height, self.width), np.uint8)
        mask[body == sim.robot] = SEG_ARM
        scene = getattr(sim, "scene_bodies", {}) or {}
        if scene.get("object") is not None:
            mask[body == scene["object"]] = SEG_OBJECT
        if scene.get("block") is not None:
            mask[body == scene["block"]] = SEG_OBJECT
        if scene.get("table") is not None:
            mask[body == scene["table"]] = SEG_TABLE
        rgb = np.ascontiguousarray(rgba[:, :, :3])
        rgb[body < 0] = np.asarray(self.cfg.background, np.uint8)
        return rgb, mask

    def _capsules(self, sim: "RenderedSim") -> "_RobotCapsules":
        key = (sim.physics_client, sim.robot)
        caps = self._robots.get(key)
        if caps is None:
            caps = self._robots[key] = _RobotCapsules(sim)
        return caps

    def _render_fast(self, sim: "RenderedSim"):
        H, W = self.height, self.width
        n_pix = H * W
        caps = self._capsules(sim)
        pos, R = caps.link_poses(sim)
        rows = caps.rows
        A = np.einsum("kij,kj->ki", R[rows], caps.a) + pos[rows]
        B = np.einsum("kij,kj->ki", R[rows], caps.b) + pos[rows]
        rad = caps.r
        O = self.eye

        t_best = np.full(n_pix, np.inf)
        rgb = np.empty((n_pix, 3))
        rgb[:] = self._bg
        mask = np.zeros(n_pix, np.uint8)
        L = self._light
        amb, dif = self.cfg.ambient, self.cfg.diffuse

        peg = getattr(sim, "peg", None)
        scene = getattr(sim, "scene", None)
        if peg is not None:  # peg insertion: its table and the block instead of the scene's
            self._draw_peg_scene(sim, peg, t_best, rgb, mask)
            scene = None

        # --- table: a horizontal rectangle (top face of the table box) ---
        if scene is not None and scene.table:
            dz = self._rays[:, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (scene.table_height - O[2]) / dz
            hx = O[0] + t * self._rays[:, 0]
            hy = O[1] + t * self._rays[:, 1]
            cx, cy = scene.table_center
            sx, sy = scene.table_size
            hit = (t > 0) & (np.abs(hx - cx) <= 0.5 * sx) & (np.abs(hy - cy) <= 0.5 * sy)
            t_best[hit] = t[hit]
            shade = amb + dif * max(L[2], 0.0)
            rgb[hit] = np.asarray(scene.table_rgba[:3]) * shade
            mask[hit] = SEG_TABLE

        # --- object: an axis-aligned cube or a sphere at the target ---
        if scene is not None and scene.object_shape != "none":
            c = np.asarray(sim.target, dtype=np.float64)
            h = 0.5 * scene.object_size
            col = np.asarray(scene.object_rgba[:3])
            idx = self._box_pixels(c - h, c + h)
            if idx.size:
                D = self._rays[idx]
                if scene.object_shape == "sphere":
                    oc = O - c
                    bq = D @ oc
                    disc = bq * bq - (oc @ oc - h * h)
                    ok = disc >= 0
                    t = -bq - np.sqrt(np.where(ok, disc, 0.0))
                    ok &= (t > 0) & (t < t_best[idx])
                    if ok.any():
                        ii, tt = idx[ok], t[ok]
                        n = (O + tt[:, None] * D[ok] - c) / h
                        t_best[ii] = tt
                        rgb[ii] = col * (amb + dif * np.maximum(n @ L, 0.0))[:, None]
                        mask[ii] = SEG_OBJECT
                else:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        inv = 1.0 / D
                        t1 = (c - h - O) * inv
                        t2 = (c + h - O) * inv
                    tmin = np.minimum(t1, t2)
                    tn = tmin.max(axis=1)
                    tf = np.maximum(t1, t2).min(axis=1)
                    ok = (tn <= tf) & (tn > 0) & (tn < t_best[idx])
                    if ok.any():
                        ii = idx[ok]
                        axis = tmin[ok].argmax(axis=1)
                        sgn = -np.sign(D[ok][np.arange(len(ii)), axis])
                        shade = amb + dif * np.maximum(sgn * L[axis], 0.0)
                        t_best[ii] = tn[ok]
                        rgb[ii] = col * shade[:, None]
                        mask[ii] = SEG_OBJECT

        # --- arm: capsules.  Ray-capsule tests only for the (pixel, capsule) pairs where the pixel
        # lies in the capsule's screen bounding box (the projected corners of its world AABB) ---
        pix, cap = self._capsule_pairs(A, B, rad)
        if pix.size:
            D = self._rays[pix]
            Ak, rk = A[cap], rad[cap]
            ba = (B - A)[cap]
            oa = O - Ak
            baba = np.einsum("ni,ni->n", ba, ba)
            baoa = np.einsum("ni,ni->n", ba, oa)
            oaoa = np.einsum("ni,ni->n", oa, oa)
            bard = np.einsum("ni,ni->n", D, ba)
            rdoa = np.einsum("ni,ni->n", D, oa)
            rr = rk * rk
            a = baba - bard * bard
            b = baba * rdoa - baoa * bard
            c = baba * oaoa - baoa * baoa - rr * baba
            hdisc = b * b - a * c
            with np.errstate(divide="ignore", invalid="ignore"):
                t_side = (-b - np.sqrt(np.maximum(hdisc, 0.0))) / a
                y = baoa + t_side * bard
            side_ok = (hdisc >= 0) & (a > 1e-12) & (y > 0) & (y < baba)
            # otherwise the end cap: the sphere at B where the side hit lies beyond B, else at A
            use_b = y >= baba
            bc = np.where(use_b, rdoa - bard, rdoa)  # D.(O - B) or D.(O - A)
            cc = np.where(use_b, oaoa - 2.0 * baoa + baba, oaoa) - rr
            hc = bc * bc - cc
            t_cap = -bc - np.sqrt(np.maximum(hc, 0.0))
            t = np.where(side_ok, t_side, np.where(hc >= 0, t_cap, np.inf))
            t[~(t > 0)] = np.inf
            # nearest capsule per pixel: scatter into a dense (pixels, capsules) depth table
            K = len(rad)
            T = np.full((n_pix, K), np.inf)
            T[pix, cap] = t
            k = T.argmin(axis=1)
            tk = T[np.arange(n_pix), k]
            ii = np.flatnonzero(tk < t_best)
            if ii.size:
                kk, tt = k[ii], tk[ii]
                P = O + tt[:, None] * self._rays[ii]
                Akk = A[kk]
                bak = B[kk] - Akk
                s = np.clip(np.einsum("ni,ni->n", P - Akk, bak)
                            / np.maximum(np.einsum("ni,ni->n", bak, bak), 1e-12), 0.0, 1.0)
                nrm = (P - Akk - s[:, None] * bak) / rad[kk][:, None]
                t_best[ii] = tt
                rgb[ii] = caps.rgb[kk] * (amb + dif * np.maximum(nrm @ L, 0.0))[:, None]
                mask[ii] = SEG_ARM

        if peg is not None:
            self._draw_peg(sim, peg, t_best, rgb, mask)

        img = np.clip(rgb * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8).reshape(H, W, 3)
        return img, mask.reshape(H, W)

    # --- peg insertion (sim.peg): table, block with the hole, peg ------------------------------
    def _ray_box(self, lo: np.ndarray, hi: np.ndarray):
        """``(pixels, t_entry, entry_axis)`` of the pixel rays that enter a world AABB in front
        of the camera (slab test on the pixels of its screen bounding box; any depth)."""
        idx = self._box_pixels(lo, hi)
        if not idx.size:
            e = np.empty(0, np.int64)
            return e, np.empty(0), e
        O = self.eye
        D = self._rays[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / D
            t1 = (lo - O) * inv
            t2 = (hi - O) * inv
        tmin = np.fmin(t1, t2)
        tn = tmin.max(axis=1)
        tf = np.fmax(t1, t2).min(axis=1)
        ok = np.flatnonzero((tn <= tf) & (tn > 0))
        return idx[ok], tn[ok], tmin[ok].argmax(axis=1)

    def _draw_peg_scene(self, sim: "RenderedSim", peg, t_best, rgb, mask) -> None:
        """The static part of the peg scene (table, block with the hole) into the empty buffers.

        It changes only with the block's position (the condition) or the table, so its layer is
        rendered once per geometry and copied afterwards (a few entries kept; a copy equals the
        rendering exactly: the layer is drawn first, on the background)."""
        table = None
        body = (getattr(sim, "scene_bodies", None) or {}).get("table")
        if body is not None:
            cid = sim.physics_client
            vs = p.getVisualShapeData(body, physicsClientId=cid)
            if vs and vs[0][2] == p.GEOM_BOX:
                pos = p.getBasePositionAndOrientation(body, physicsClientId=cid)[0]
                table = (tuple(float(a) + float(b) for a, b in zip(pos, vs[0][5])),
                         tuple(0.5 * float(x) for x in vs[0][3]))
        target = tuple(float(x) for x in np.asarray(sim.target, dtype=np.float64))
        key = (target, table, float(peg.block_size), float(peg.hole_depth), float(peg.floor),
               float(peg.radius), float(peg.clearance), float(peg.chamfer))
        layer = self._static_layers.get(key)
        if layer is None:
            tb, rg, mk = t_best.copy(), rgb.copy(), mask.copy()
            self._draw_peg_static(np.asarray(target), table, peg, tb, rg, mk)
            if len(self._static_layers) >= 16:  # e.g. random block positions: keep the newest
                self._static_layers.pop(next(iter(self._static_layers)))
            layer = self._static_layers[key] = (tb, rg, mk)
        t_best[:], rgb[:], mask[:] = layer

    def _draw_peg_static(self, c: np.ndarray, table, peg, t_best, rgb, mask) -> None:
        """The table (``(centre, half extents)`` of its box, or None) and the block whose hole's
        opening is centred at ``c``."""
        from gps_ros.sim.peg import BLOCK_RGBA, TABLE_RGBA, hole_half_width

        O, L = self.eye, self._light
        amb, dif = self.cfg.ambient, self.cfg.diffuse
        # --- table: the PyBullet body (a box, axis-aligned), so any centre/size/height is drawn
        if table is not None:
            tc, half = np.asarray(table[0]), np.asarray(table[1])
            ii, tn, axis = self._ray_box(tc - half, tc + half)
            near = tn < t_best[ii]
            ii, tn, axis = ii[near], tn[near], axis[near]
            if ii.size:
                sgn = -np.sign(self._rays[ii, axis])
                t_best[ii] = tn
                rgb[ii] = np.asarray(TABLE_RGBA[:3]) * (amb + dif * np.maximum(sgn * L[axis], 0.0))[:, None]
                mask[ii] = SEG_TABLE
        # --- block: box [c - (B, B, d + floor), c + (B, B, 0)] minus the hole [c - (h, h, d), c + (h, h, 0)]
        #     and, with a chamfer ch, minus the funnel |x|, |y| <= h + ch + z (-ch <= z <= 0) above it
        Bh = 0.5 * float(peg.block_size)
        d, fl, h = float(peg.hole_depth), float(peg.floor), hole_half_width(peg)
        ch = float(peg.chamfer)
        ho = h + ch                        # half width of the opening in the top face
        ii, tn, axis = self._ray_box(c - np.array([Bh, Bh, d + fl]), c + np.array([Bh, Bh, 0.0]))
        if not ii.size:
            return
        D = self._rays[ii]
        col = np.asarray(BLOCK_RGBA[:3])
        top = (axis == 2) & (D[:, 2] < 0)
        hx = O[0] + tn * D[:, 0] - c[0]
        hy = O[1] + tn * D[:, 1] - c[1]
        hole = top & (np.abs(hx) <= ho) & (np.abs(hy) <= ho)
        t_hit = tn.copy()
        slope = np.full(len(ii), -1)       # which 45° face (0..3: +x, -x, +y, -y) a ray ends on
        # the faces as half-spaces n . (p - c) <= ho: +-x - z <= ho, +-y - z <= ho (z from the opening)
        n = np.array([[1.0, 0, -1], [-1.0, 0, -1], [0, 1.0, -1], [0, -1.0, -1]])
        if hole.any():  # through the opening: the ray leaves the hole's box at an inner wall or the floor
            Dh = D[hole]
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = 1.0 / Dh
                t1 = (c - np.array([h, h, d]) - O) * inv
                t2 = (c + np.array([h, h, 0.0]) - O) * inv
                th = np.fmax(t1, t2).min(axis=1)
                if ch:  # leave the funnel through a 45° face before its foot z = -ch?
                    Or = O - c
                    den = Dh @ n.T                                   # (k, 4)
                    tf = np.where(den > 0, (ho - n @ Or) / den, np.inf)
                    k = tf.argmin(axis=1)
                    tfa = tf[np.arange(len(k)), k]
                    t_foot = (-ch - Or[2]) / Dh[:, 2]               # D z < 0 through the top face
                    on = tfa < t_foot
                    th = np.where(on, tfa, th)
                    sl = np.where(on, k, -1)
                    slope[np.flatnonzero(hole)] = sl
            t_hit[hole] = th
        near = t_hit < t_best[ii]
        ii, D, axis, top, hole, t_hit = ii[near], D[near], axis[near], top[near], hole[near], t_hit[near]
        slope, hx, hy = slope[near], hx[near], hy[near]
        if not ii.size:
            return
        sgn = -np.sign(D[np.arange(len(ii)), axis])
        shade = amb + dif * np.maximum(sgn * L[axis], 0.0)
        out = col * shade[:, None]
        hole_rgb = col * _HOLE_SHADE
        out[hole] = hole_rgb
        if ch:  # a chamfer face, lit by its inward normal
            face_rgb = col * (amb + dif * np.maximum(-n @ L / np.sqrt(2.0), 0.0))[:, None]  # (4, 3)
            on = slope >= 0
            out[on] = face_rgb[slope[on]]
        # anti-aliased opening: top-face pixels near it, blended by the sub-pixel coverage
        corners = c + np.array([[-ho, -ho, 0.0], [-ho, ho, 0.0], [ho, -ho, 0.0], [ho, ho, 0.0]])
        if top.any() and np.all(self.depth_of(corners) > self.cfg.near) and O[2] > c[2]:
            uv = self.project(corners)
            W = self.width
            c0, c1 = math.floor(uv[:, 0].min()) - 1, math.ceil(uv[:, 0].max()) + 1
            r0, r1 = math.floor(uv[:, 1].min()) - 1, math.ceil(uv[:, 1].max()) + 1
            rows, cols = ii // W, ii % W
            sel = np.flatnonzero(top & (cols >= c0) & (cols <= c1) & (rows >= r0) & (rows <= r1))
            if sel.size:
                f = self._hole_coverage(rows[sel], cols[sel], c, ho)
                inner = hole_rgb
                if ch:  # at the opening's edge the face next to the pixel shows, not the bore
                    ax, ay = np.abs(hx[sel]), np.abs(hy[sel])
                    face = np.where(ax >= ay, np.where(hx[sel] >= 0, 0, 1), np.where(hy[sel] >= 0, 2, 3))
                    inner = np.where(hole[sel, None] & (slope[sel, None] < 0), hole_rgb, face_rgb[face])
                out[sel] = (1.0 - f)[:, None] * (col * (amb + dif * max(L[2], 0.0))) + f[:, None] * inner
        t_best[ii] = t_hit
        rgb[ii] = out
        mask[ii] = SEG_OBJECT

    def _hole_coverage(self, rows: np.ndarray, cols: np.ndarray, c: np.ndarray, h: float) -> np.ndarray:
        """Fraction of each pixel's ``_HOLE_SS`` x ``_HOLE_SS`` sub-pixel rays whose hit on the
        plane ``z = c[2]`` lies in the square opening of half width ``h`` around ``c``."""
        right, up, back, tx, ty = self._basis
        a = (np.arange(_HOLE_SS) + 0.5) / _HOLE_SS
        u = ((cols[:, None] + a) / self.width * 2.0 - 1.0) * tx          # (n, S)
        v = (1.0 - (rows[:, None] + a) / self.height * 2.0) * ty         # (n, S)
        uu, vv = u[:, None, :], v[:, :, None]                              # (n, S, S)
        dx = uu * right[0] + vv * up[0] - back[0]
        dy = uu * right[1] + vv * up[1] - back[1]
        dz = uu * right[2] + vv * up[2] - back[2]
        O = self.eye
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (c[2] - O[2]) / dz
        inside = (t > 0) & (np.abs(O[0] + t * dx - c[0]) <= h) & (np.abs(O[1] + t * dy - c[1]) <= h)
        return inside.mean(axis=(1, 2))

    def _peg_link(self, sim: "RenderedSim") -> int:
        key = (sim.physics_client, sim.robot)
        link = self._peg_links.get(key)
        if link is None:
            cid, r = sim.physics_client, sim.robot
            link = next((j for j in range(p.getNumJoints(r, physicsClientId=cid))
                         if p.getJointInfo(r, j, physicsClientId=cid)[12] == b"peg"), -2)
            self._peg_links[key] = link
        return link

    def _draw_peg(self, sim: "RenderedSim", peg, t_best, rgb, mask) -> None:
        """The peg: an exact cylinder along the ``peg`` link's z axis from ``-grip`` to ``tip``."""
        from gps_ros.sim.peg import PEG_RGBA

        link = self._peg_link(sim)
        if link < 0:
            return
        st = p.getLinkState(sim.robot, link, computeForwardKinematics=1, physicsClientId=sim.physics_client)
        pos = np.asarray(st[4], dtype=np.float64)
        z = _quats_to_mats(np.asarray([st[5]], dtype=np.float64))[0][:, 2]
        A = pos - float(peg.grip) * z
        Bp = pos + float(peg.tip) * z
        r = float(peg.radius)
        idx = self._box_pixels(np.minimum(A, Bp) - r, np.maximum(A, Bp) + r)
        if not idx.size:
            return
        O = self.eye
        D = self._rays[idx]
        ba, oc = Bp - A, O - A
        baba, baoc = ba @ ba, ba @ oc
        bard, rdoc = D @ ba, D @ oc
        k2 = baba - bard * bard
        k1 = baba * rdoc - baoc * bard
        k0 = baba * (oc @ oc) - baoc * baoc - r * r * baba
        disc = k1 * k1 - k2 * k0
        hs = np.sqrt(np.maximum(disc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-k1 - hs) / k2
            y = baoc + t_side * bard
            side = (disc >= 0) & (k2 > 1e-12) & (y > 0) & (y < baba)
            t_cap = (np.where(y < 0, 0.0, baba) - baoc) / bard   # the end disc on the side of the hit
            cap = (disc >= 0) & ~side & (np.abs(k1 + k2 * t_cap) < hs)
        t = np.where(side, t_side, np.where(cap, t_cap, np.inf))
        ok = (t > 0) & (t < t_best[idx])
        if not ok.any():
            return
        ii, tt, side_ok, yy = idx[ok], t[ok], side[ok], y[ok]
        P = O + tt[:, None] * D[ok]
        n_side = (P - A - (yy / baba)[:, None] * ba) / r
        n_cap = np.where(yy < 0, -1.0, 1.0)[:, None] * (ba / math.sqrt(baba))
        nrm = np.where(side_ok[:, None], n_side, n_cap)
        t_best[ii] = tt
        rgb[ii] = np.asarray(PEG_RGBA[:3]) * (self.cfg.ambient + self.cfg.diffuse
                                              * np.maximum(nrm @ self._light, 0.0))[:, None]
        mask[ii] = SEG_ARM

    def _capsule_pairs(self, A: np.ndarray, B: np.ndarray, rad: np.ndarray):
        """(pixel, capsule) index pairs: pixels inside each capsule's screen bounding box."""
        lo = np.minimum(A, B) - rad[:, None]
        hi = np.maximum(A, B) + rad[:, None]
        K = len(rad)
        corners = np.empty((K, 8, 3))
        i = 0
        for x in (lo[:, 0], hi[:, 0]):
            for y in (lo[:, 1], hi[:, 1]):
                for z in (lo[:, 2], hi[:, 2]):
                    corners[:, i, 0], corners[:, i, 1], corners[:, i, 2] = x, y, z
                    i += 1
        behind = (self.depth_of(corners) <= self.cfg.near).any(axis=1)
        uv = self.project(corners)
        W, H = self.width, self.height
        c0 = np.clip(np.floor(uv[:, :, 0].min(axis=1)), 0, W).astype(np.int64)
        c1 = np.clip(np.ceil(uv[:, :, 0].max(axis=1)), -1, W - 1).astype(np.int64)
        r0 = np.clip(np.floor(uv[:, :, 1].min(axis=1)), 0, H).astype(np.int64)
        r1 = np.clip(np.ceil(uv[:, :, 1].max(axis=1)), -1, H - 1).astype(np.int64)
        c0[behind], r0[behind], c1[behind], r1[behind] = 0, 0, W - 1, H - 1
        pix, cap = [], []
        for k in range(K):
            if c0[k] > c1[k] or r0[k] > r1[k]:
                continue
            idx = (np.arange(r0[k], r1[k] + 1)[:, None] * W + np.arange(c0[k], c1[k] + 1)).reshape(-1)
            pix.append(idx)
            cap.append(np.full(idx.size, k))
        if not pix:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(pix), np.concatenate(cap)

    def _box_pixels(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Flat indices of the pixels inside the screen bounding box of a world AABB (all pixels
        when part of the box is behind the near plane)."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])])
        if np.any(self.depth_of(corners) <= self.cfg.near):
            return np.arange(self.width * self.height)
        uv = self.project(corners)
        c0 = max(int(math.floor(uv[:, 0].min())), 0)
        c1 = min(int(math.ceil(uv[:, 0].max())), self.width - 1)
        r0 = max(int(math.floor(uv[:, 1].min())), 0)
        r1 = min(int(math.ceil(uv[:, 1].max())), self.height - 1)
        if c0 > c1 or r0 > r1:
            return np.empty(0, dtype=np.int64)
        cols = np.arange(c0, c1 + 1)
        rows = np.arange(r0, r1 + 1)
        return (rows[:, None] * self.width + cols[None, :]).reshape(-1)


def draw_points(image: np.ndarray, uv, color: Sequence[int] = (0, 255, 0), radius: int = 0) -> np.ndarray:
    """Mark pixel coordinates ``uv`` ``(n, 2)`` (from :meth:`Camera.project`) on a copy of ``image``
    with small squares of half-size ``radius`` pixels; points off the image are skipped."""
    out = np.array(image, copy=True)
    H, W = out.shape[:2]
    for u, v in np.asarray(uv, dtype=np.float64).reshape(-1, 2):
        if not (np.isfinite(u) and np.isfinite(v)):
            continue
        c, r = int(math.floor(u + 0.5)), int(math.floor(v + 0.5))
        r0, r1 = max(r - radius, 0), min(r + radius, H - 1)
        c0, c1 = max(c - radius, 0), min(c + radius, W - 1)
        if r0 <= r1 and c0 <= c1:
            out[r0:r1 + 1, c0:c1 + 1] = np.asarray(color, dtype=out.dtype)
    return out
