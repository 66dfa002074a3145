"""A fixed RGB camera for the Panda reaching scene (the vision task's image observation).

Two renderers draw the same scene from the same pinhole camera:

* ``"fast"`` (default): an analytic numpy ray caster.  Each Panda link is approximated by a few
  capsules (segments with a radius, in the link frame, fitted once to the ``pybullet_data``
  visual meshes), placed with the link poses from one ``p.getLinkStates`` call.  The scene object
  (an axis-aligned cube or a sphere), and a finite table top (a horizontal rectangle), are
  intersected exactly.  One ray per pixel through the pixel centre, nearest hit wins (an exact
  per-pixel depth test), Lambert shading with a fixed directional light plus ambient.  All ray-
  primitive tests are batched: the three per-ray dot products are matrix products against the
  fixed per-pixel ray directions (the camera never moves), the rest is element-wise numpy on
  ``(pixels, capsules)`` arrays restricted to the pixels inside the arm's screen bounding box.
  Deterministic (no randomness, no threads, float64 throughout).
* ``"tiny"``: PyBullet's TinyRenderer (``p.getCameraImage(..., renderer=ER_TINY_RENDERER)``) on
  the full visual meshes -- the slow reference (about 50 frames/s at 64x64 here).  For the object
  and table to show up in it the simulator must have been built with a
  :class:`~gps_ros.sim.panda.SceneConfig` (which adds visual-only PyBullet bodies for them).

Both use the same view and projection matrices (``p.computeViewMatrix`` /
``p.computeProjectionMatrixFOV``; ``fov`` is the vertical field of view in degrees), so
:meth:`Camera.project` maps world points to the pixel coordinates of either image.  Pixel
convention: ``(u, v)`` = (column, row) with integer values at pixel centres, ``(0, 0)`` the centre
of the top-left pixel (the OpenCV convention).

Measured figures: ``bench/bench_camera.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional, Protocol, Sequence, Tuple

import numpy as np
import pybullet as p


class RenderedSim(Protocol):
    """What the camera reads of a simulator (:class:`gps_ros.sim.panda.PandaReachSim` has it; the
    camera does not import the simulator, which uses the camera for its ``render``).  Optional:
    ``scene`` (a :class:`~gps_ros.sim.panda.SceneConfig` or None: table and object to draw) and
    ``scene_bodies`` (``{"object": id, "table": id}``, the visual bodies TinyRenderer labels)."""

    physics_client: int            # the PyBullet client id
    robot: int                     # the Panda's body id
    target: Any                    # (3,) world position of the object (the reach target)


# Segment label values of Camera.segment() / render(..., return_mask=True).
SEG_BACKGROUND, SEG_TABLE, SEG_ARM, SEG_OBJECT = 0, 1, 2, 3

# Capsules approximating the Panda's visual meshes: (link index, a, b, radius), a/b in the link
# frame (m).  Link -1 is the base.  Radii are the 80th percentile of the distance of the (4 mm
# voxel-thinned) mesh vertices to their nearest segment; _RADIUS_SCALE then balances the
# silhouette against TinyRenderer's (as many pixels too many as too few; mean arm IoU ~0.75 over
# random poses and two viewpoints at 128x128; tests/test_camera.py checks the overlap).
PANDA_CAPSULES: Tuple[Tuple[int, Tuple[float, float, float], Tuple[float, float, float], float], ...] = (
    (-1, (-0.08, 0.0, 0.06), (0.0, 0.0, 0.06), 0.075),
    (-1, (0.0, 0.0, 0.06), (0.0, 0.0, 0.09), 0.065),
    (0, (0.0, 0.0, -0.137), (0.0, 0.0, 0.0), 0.062),
    (0, (0.0, 0.0, 0.0), (0.0, -0.074, 0.0), 0.056),
    (1, (0.0, 0.0, 0.0), (0.0, 0.0, 0.074), 0.056),
    (1, (0.0, 0.0, 0.0), (0.0, -0.139, 0.0), 0.060),
    (2, (0.0, 0.0, -0.066), (0.0, 0.0, 0.0), 0.062),
    (2, (0.0825, 0.0, 0.0), (0.0825, 0.056, 0.0), 0.055),
    (2, (0.0, 0.0, -0.02), (0.0825, 0.0, 0.0), 0.054),
    (3, (0.0, 0.0, 0.0), (0.0, 0.0, 0.056), 0.055),
    (3, (-0.0825, 0.0, 0.0), (-0.0825, 0.069, 0.0), 0.060),
    (3, (0.0, 0.0, 0.02), (-0.0825, 0.0, 0.0), 0.055),
    (4, (0.0, 0.0, -0.204), (0.0, 0.0, -0.16), 0.062),
    (4, (0.0, 0.04, -0.19), (0.0, 0.085, -0.09), 0.045),
    (4, (0.0, 0.085, -0.09), (0.0, 0.09, 0.0), 0.045),
    (4, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.050),
    (5, (0.0, 0.0, 0.0), (0.088, 0.0, 0.0), 0.054),
    (5, (0.088, 0.0, 0.0), (0.088, 0.03, 0.0), 0.053),
    (6, (0.0, 0.0, 0.06), (0.0, 0.0, 0.09), 0.055),
    (8, (0.0, -0.075, 0.025), (0.0, 0.075, 0.025), 0.035),
    (8, (0.0, 0.0, 0.0), (0.0, 0.0, 0.03), 0.030),
    (9, (0.0, 0.01, 0.01), (0.0, 0.012, 0.044), 0.013),
    (10, (0.0, 0.01, 0.01), (0.0, 0.012, 0.044), 0.013),
)
_RADIUS_SCALE = 0.93
_N_LINKS = 11  # links 0..10 of franka_panda/panda.urdf carry geometry (8 and 11 are frames only)

# Link colours (RGB in [0, 1]): white-grey arm, darker wrist, a blue gripper so that the end
# effector stands out from the arm (and from the red object and the brown table).
_ARM_RGB = (0.86, 0.86, 0.84)
_LINK_RGB = {-1: (0.55, 0.55, 0.55), 5: (0.62, 0.62, 0.64), 6: (0.45, 0.45, 0.48),
             8: (0.25, 0.45, 0.90), 9: (0.15, 0.30, 0.70), 10: (0.15, 0.30, 0.70)}


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
    :class:`~gps_ros.sim.panda.PandaReachSim`) from a fixed viewpoint."""

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
        self._rays_T = np.ascontiguousarray(self._rays.T)
        ld = np.asarray(cfg.light_direction, dtype=np.float64)
        self._light = ld / np.linalg.norm(ld)
        cap = PANDA_CAPSULES
        self._cap_link = np.array([c[0] for c in cap])
        self._cap_a = np.array([c[1] for c in cap], dtype=np.float64)
        self._cap_b = np.array([c[2] for c in cap], dtype=np.float64)
        self._cap_r = _RADIUS_SCALE * np.array([c[3] for c in cap], dtype=np.float64)
        self._cap_rgb = np.array([_LINK_RGB.get(int(L), _ARM_RGB) for L in self._cap_link])
        self._link_rows = self._cap_link + 1  # row 0 of the pose table is the base
        self._bg = np.asarray(cfg.background, dtype=np.float64) / 255.0
        self._link_ids = list(range(_N_LINKS))

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
        if scene.get("table") is not None:
            mask[body == scene["table"]] = SEG_TABLE
        rgb = np.ascontiguousarray(rgba[:, :, :3])
        rgb[body < 0] = np.asarray(self.cfg.background, np.uint8)
        return rgb, mask

    def _link_poses(self, sim: "RenderedSim") -> Tuple[np.ndarray, np.ndarray]:
        cid, r = sim.physics_client, sim.robot
        states = p.getLinkStates(r, self._link_ids, computeForwardKinematics=1, physicsClientId=cid)
        bpos, born = p.getBasePositionAndOrientation(r, physicsClientId=cid)
        pos = np.array([bpos] + [s[4] for s in states], dtype=np.float64)
        quat = np.array([born] + [s[5] for s in states], dtype=np.float64)
        return pos, _quats_to_mats(quat)

    def _render_fast(self, sim: "RenderedSim"):
        H, W = self.height, self.width
        n_pix = H * W
        pos, R = self._link_poses(sim)
        rows = self._link_rows
        A = np.einsum("kij,kj->ki", R[rows], self._cap_a) + pos[rows]
        B = np.einsum("kij,kj->ki", R[rows], self._cap_b) + pos[rows]
        rad = self._cap_r
        O = self.eye

        t_best = np.full(n_pix, np.inf)
        rgb = np.empty((n_pix, 3))
        rgb[:] = self._bg
        mask = np.zeros(n_pix, np.uint8)
        L = self._light
        amb, dif = self.cfg.ambient, self.cfg.diffuse

        # --- table: a horizontal rectangle (top face of the table box) ---
        scene = getattr(sim, "scene", None)
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
                rgb[ii] = self._cap_rgb[kk] * (amb + dif * np.maximum(nrm @ L, 0.0))[:, None]
                mask[ii] = SEG_ARM

        img = np.clip(rgb * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8).reshape(H, W, 3)
        return img, mask.reshape(H, W)

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
