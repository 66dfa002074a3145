"""Capsules (segments with a radius) standing in for a robot's links in the fast camera.

:func:`robot_capsules` gives the capsules of a robot: those of a file ``<urdf stem>.capsules.yaml``
next to its URDF where there is one (fitted by hand, e.g. the Panda's to its visual meshes), else
capsules fitted to the URDF's collision geometry (:func:`fit_capsules`).  Points are in the URDF
frame of each link (metres), radii before the camera's ``radius_scale``.

Fitting (:func:`fit_capsules`), per link with ``<collision>`` geometry:

1. Its collision geometry as triangles in the link frame: every ``<collision>`` element with its
   ``<origin>``; meshes with their ``scale`` -- binary STL (the usual collision format) read with
   numpy, any other format (OBJ, COLLADA ``.dae``, ASCII STL, ...) through coal's assimp-based
   ``MeshLoader``: coal comes with the ``pin`` wheel the robot model already needs, and reads what
   Pinocchio's geometry models read (PyBullet only hands back a mesh's convex hull); ``box``,
   ``cylinder``, ``sphere`` and ``capsule`` primitives are triangulated.  A mesh that cannot be read
   is skipped with a warning.
2. :data:`_SAMPLES` points spread uniformly over that surface (by triangle area, a fixed seed:
   deterministic).  Points, not vertices: CAD meshes put most vertices on small features (screw
   holes, fillets), which would drag a fit toward them.
3. The link's silhouettes (:class:`_Silhouettes`): orthographic views along the axes and the four
   diagonals of the link frame, :data:`_SIL_RES` pixels across the link; the projected surface
   points cover each silhouette (every line of sight through it crosses the surface).  A capsule's
   projection is the 2D capsule of its projected segment with the same radius, so the capsules'
   silhouettes are exact and cheap.
4. One to :data:`_MAX_PER_LINK` capsules.  K = 1: the principal axis through the middle of the
   cross-section, radius the :data:`_RADIUS_PERCENTILE` th percentile of the points' distances to
   it, the ends :data:`_END_INSET` radii inside the extreme points (:func:`_fit_one`).  K > 1: the
   points split into K groups along the principal axis, refined by "k-segments" (each group gets
   its capsule, each point goes to the capsule whose surface is nearest; :func:`_fit_k`).  Then a
   pattern search moves the end points and radii to maximise the intersection over union (IoU)
   of the capsules' silhouettes with the link's (:meth:`_Silhouettes.refine`).  K grows while that
   raises the IoU by :data:`_SPLIT_GAIN` and the IoU is below :data:`_GOOD_IOU`.
   A fit that degenerates (too few points, a zero-size link, non-finite numbers) or that matches
   the silhouettes worse than the bounding capsule of the points (:func:`_bounding_capsule`) gives
   that bounding capsule instead (never an error).

Colours (:func:`link_colours`): the links fixed to the URDF root (the root included: no movable
joint between them and it) are the base (:data:`BASE_RGB`); the *hand* is the rigid body that
carries the EE link -- the child link of the last movable joint on the chain from the root to
``ee_link`` -- and every link below it (links fixed to it, fingers) (:data:`HAND_RGB`); the rest
is the arm (:data:`ARM_RGB`).  E.g. the iiwa's ``lbr_iiwa_link_7`` (the flange), the UR5's
``wrist_3_link`` with ``ee_link`` and ``tool0``, the SO-101's ``gripper_link`` with its moving jaw.

The capsule set's ``radius_scale`` is :data:`FIT_RADIUS_SCALE` (see there).  Root geometry (the
SO-101's ``base_link`` is its URDF root) gets capsules like any link; the camera draws them at the
simulator's ``root_pose``.  A fit takes 0.5-0.8 s of CPU per robot (iiwa, UR5, SO-101) and is
kept in memory per URDF and EE link (:func:`fit_capsules`), so a robot is fitted once per process.
"""
from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import yaml

from gps_ros.robot.description import RobotDescription, RobotError

log = logging.getLogger(__name__)

#: colours of the fitted capsules: a light grey arm, a darker base, a blue hand (see the module
#: docstring for which links are which) so that the end effector stands out
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


# =================================================================================================
# Fitting capsules to the URDF's collision geometry
# =================================================================================================

#: the camera's ``radius_scale`` for fitted capsules.  The fit matches each link's collision
#: geometry, but the fast camera's silhouettes come out fatter than TinyRenderer's (which draws
#: the visual meshes, and rasterises thin parts thinner); 0.93 balances them.  Over the scenes of
#: tests/test_camera.py (12 poses each of the iiwa, UR5 and SO-101, 128x128) the fast arm mask has
#: 2944 pixels that TinyRenderer's lacks and lacks 2803 of TinyRenderer's (1.0: 4665 vs 1449; 0.90:
#: 2348 vs 3539).  At 64x64 0.90 would balance (0.93: 1189 vs 830).  The mean IoU changes by less
#: than 0.015 between 0.90 and 1.0.
FIT_RADIUS_SCALE = 0.93
#: surface points sampled per link (for its silhouettes; every few of them for the first fits)
_SAMPLES = 16000
_FIT_POINTS = 1000
#: the most capsules one link gets
_MAX_PER_LINK = 3
#: a capsule's first radius: this percentile of its points' distances to its axis
_RADIUS_PERCENTILE = 90.0
#: the segment's first ends sit this many radii inside the extreme points along the axis (1: a
#: rounded end is matched; pi/4: a flat end's silhouette area is)
_END_INSET = 0.85
#: K -> K + 1 capsules on a link only if that raises its silhouettes' IoU by this much
_SPLIT_GAIN = 0.03
#: ... and only while the IoU is below this
_GOOD_IOU = 0.9
#: the views of a link's silhouettes: the axes and the four diagonals, and the pixels across
_VIEWS = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)],
                  dtype=np.float64)
_VIEWS /= np.linalg.norm(_VIEWS, axis=1, keepdims=True)
_SIL_RES = 24
_SIL_SUPERSAMPLE = 3

_FIT_CACHE: Dict[Tuple[str, str], CapsuleSet] = {}
_FIT_CACHE_SIZE = 8


def fit_capsules(description: RobotDescription) -> CapsuleSet:
    """Capsules fitted to the URDF's collision geometry (see the module docstring); computed once
    per URDF and EE link in a process."""
    key = (description.urdf, description.ee_link)
    cached = _FIT_CACHE.get(key)
    if cached is not None:
        return cached
    colours = link_colours(description)
    caps: List[Capsule] = []
    for link, tris in _collision_triangles(description).items():
        if not len(tris):
            continue
        points = _sample_surface(tris, _SAMPLES)
        rgb = colours.get(link, ARM_RGB)
        for a, b, r in _fit_link(points):
            caps.append(Capsule(link, tuple(float(x) for x in a), tuple(float(x) for x in b),
                                float(r), rgb))
    if not caps:
        raise RobotError(f"{description.source}: no collision geometry to fit the fast camera's "
                         "capsules to (give a <urdf stem>.capsules.yaml next to the URDF)")
    out = CapsuleSet(tuple(caps), FIT_RADIUS_SCALE)
    if len(_FIT_CACHE) >= _FIT_CACHE_SIZE:
        _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
    _FIT_CACHE[key] = out
    return out


def link_colours(description: RobotDescription) -> Dict[str, Tuple[float, float, float]]:
    """Colour of each link's fitted capsules: base, hand or arm (see the module docstring)."""
    out = {}
    for ln in description.links:
        out[ln] = BASE_RGB if not any(j.movable for j in description.chain(ln)) else ARM_RGB
    movable = [j for j in description.chain(description.ee_link) if j.movable]
    if movable:
        for ln in description.descendants(movable[-1].child):
            out[ln] = HAND_RGB
    return out


# --- collision geometry as triangles -------------------------------------------------------------
def _floats(text: Optional[str], n: int, default: float) -> np.ndarray:
    if text is None or not text.split():
        return np.full(n, default)
    v = np.array([float(x) for x in text.split()], dtype=np.float64)
    if v.size == 1 and n > 1:  # e.g. scale="0.001"
        v = np.full(n, v[0])
    if v.size != n:
        raise ValueError(f"expected {n} numbers, got {text!r}")
    return v


def _rpy_matrix(r: float, p: float, y: float) -> np.ndarray:
    """URDF ``rpy``: R = Rz(y) Ry(p) Rx(r)."""
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def _box_triangles(size: np.ndarray) -> np.ndarray:
    h = 0.5 * np.asarray(size, dtype=np.float64)
    c = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64) * h
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return np.array([[c[q[0]], c[q[i]], c[q[i + 1]]] for q in quads for i in (1, 2)])


def _revolved_triangles(profile: np.ndarray, n: int = 24) -> np.ndarray:
    """Triangles of the surface swept by a profile ``(m, 2)`` of (radius, z) around the z axis."""
    ang = 2.0 * np.pi * np.arange(n + 1) / n
    ring = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    tris = []
    for (r0, z0), (r1, z1) in zip(profile[:-1], profile[1:]):
        for i in range(n):
            p00 = [r0 * ring[i, 0], r0 * ring[i, 1], z0]
            p01 = [r0 * ring[i + 1, 0], r0 * ring[i + 1, 1], z0]
            p10 = [r1 * ring[i, 0], r1 * ring[i, 1], z1]
            p11 = [r1 * ring[i + 1, 0], r1 * ring[i + 1, 1], z1]
            tris += [[p00, p01, p11], [p00, p11, p10]]
    return np.array(tris, dtype=np.float64)


def _primitive_triangles(geom: ET.Element) -> np.ndarray:
    tag = geom.tag
    if tag == "box":
        return _box_triangles(_floats(geom.get("size"), 3, 0.0))
    r = float(geom.get("radius", 0.0))
    if tag == "sphere":
        th = np.linspace(0.0, np.pi, 13)
        return _revolved_triangles(np.stack([r * np.sin(th), -r * np.cos(th)], axis=1))
    h = 0.5 * float(geom.get("length", 0.0))
    if tag == "cylinder":
        return _revolved_triangles(np.array([[0.0, -h], [r, -h], [r, h], [0.0, h]]))
    if tag == "capsule":  # the cylinder part is ``length`` long (PyBullet's, Drake's convention)
        th = np.linspace(0.0, 0.5 * np.pi, 7)
        low = np.stack([r * np.sin(th), -h - r * np.cos(th)], axis=1)
        high = np.stack([r * np.cos(th), h + r * np.sin(th)], axis=1)
        return _revolved_triangles(np.concatenate([low, high]))
    raise ValueError(f"unknown geometry <{tag}>")


def _read_binary_stl(path: Path) -> Optional[np.ndarray]:
    """Triangles ``(m, 3, 3)`` of a binary STL file, or None if it is not one."""
    raw = path.read_bytes()
    if len(raw) < 84:
        return None
    n = int(np.frombuffer(raw, dtype="<u4", count=1, offset=80)[0])
    if len(raw) != 84 + 50 * n:  # ASCII STL (or a broken file): left to assimp
        return None
    rec = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    return np.frombuffer(raw, dtype=rec, count=n, offset=84)["v"].astype(np.float64)


def _read_mesh(path: Path) -> np.ndarray:
    """Triangles ``(m, 3, 3)`` of a mesh file (unscaled, in the file's own frame)."""
    tris = _read_binary_stl(path) if path.suffix.lower() == ".stl" else None
    if tris is not None:
        return tris
    import coal  # Pinocchio's collision library (the pin wheel), assimp inside

    model = coal.MeshLoader().load(str(path), np.ones(3))
    V = np.asarray(model.vertices(), dtype=np.float64)
    idx = np.empty((model.num_tris, 3), dtype=np.int64)
    for i in range(model.num_tris):
        t = model.tri_indices(i)
        idx[i] = (t[0], t[1], t[2])
    return V[idx]


def _collision_triangles(description: RobotDescription) -> Dict[str, np.ndarray]:
    """Each link's collision geometry as triangles ``(m, 3, 3)`` in the link frame, in document
    order; a mesh that cannot be read is skipped (with a warning)."""
    root = ET.fromstring(description.urdf)
    meshes: Dict[str, Optional[np.ndarray]] = {}
    out: Dict[str, np.ndarray] = {}
    for link in root.findall("link"):
        name = link.get("name", "")
        parts = []
        for col in link.findall("collision"):
            geom = col.find("geometry")
            shape = None if geom is None else next(iter(geom), None)
            if shape is None:
                continue
            try:
                origin = col.find("origin")
                xyz = _floats(None if origin is None else origin.get("xyz"), 3, 0.0)
                rpy = _floats(None if origin is None else origin.get("rpy"), 3, 0.0)
                if shape.tag == "mesh":
                    fn = shape.get("filename", "")
                    if fn not in meshes:
                        try:
                            meshes[fn] = _read_mesh(Path(fn))
                            if not len(meshes[fn]):
                                raise ValueError("no triangles")
                        except Exception as err:  # noqa: BLE001 - a mesh format assimp rejects, etc.
                            log.warning("%s: link %s: cannot read collision mesh %s (%s); skipped",
                                        description.source, name, fn, err)
                            meshes[fn] = None
                    if meshes[fn] is None:
                        continue
                    tris = meshes[fn] * _floats(shape.get("scale"), 3, 1.0)
                else:
                    tris = _primitive_triangles(shape)
            except ValueError as err:
                log.warning("%s: link %s: malformed <collision> (%s); skipped", description.source, name, err)
                continue
            parts.append(tris @ _rpy_matrix(*rpy).T + xyz)
        if parts:
            out[name] = np.concatenate(parts)
    return out


def _sample_surface(tris: np.ndarray, n: int) -> np.ndarray:
    """``n`` points uniformly distributed over the triangles' area (a fixed seed)."""
    rng = np.random.default_rng(0)
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    area = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)
    area = np.where(np.isfinite(area), area, 0.0)
    total = area.sum()
    if not total > 0.0:  # degenerate triangles only: their corners
        pts = tris.reshape(-1, 3)
        return pts[np.all(np.isfinite(pts), axis=1)]
    k = rng.choice(len(tris), size=n, p=area / total)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u, v = np.where(flip, 1.0 - u, u), np.where(flip, 1.0 - v, v)
    return tris[k, 0] + u[:, None] * e1[k] + v[:, None] * e2[k]


# --- fitting -------------------------------------------------------------------------------------
Seg = Tuple[np.ndarray, np.ndarray, float]


def _principal_axis(Y: np.ndarray) -> np.ndarray:
    """The unit eigenvector of the largest eigenvalue of ``Y``'s scatter, sign fixed."""
    _, V = np.linalg.eigh(Y.T @ Y)
    d = V[:, 2]
    return d if d[np.argmax(np.abs(d))] > 0 else -d


def _bounding_capsule(X: np.ndarray) -> Seg:
    """A capsule containing all points: along the longest side of their bounding box, through its
    centre, the radius the largest distance to that axis."""
    lo, hi = X.min(axis=0), X.max(axis=0)
    c = 0.5 * (lo + hi)
    d = np.zeros(3)
    d[int(np.argmax(hi - lo))] = 1.0
    Y = X - c
    s = Y @ d
    r = float(np.linalg.norm(Y - s[:, None] * d, axis=1).max())
    return c + s.min() * d, c + s.max() * d, max(r, 1e-4)


def _fit_one(X: np.ndarray) -> Seg:
    """One capsule for the points ``X`` (see the module docstring)."""
    if len(X) < 8:
        return _bounding_capsule(X)
    c = X.mean(axis=0)
    d = _principal_axis(X - c)
    # the axis through the middle of the cross-section (not the centroid, which one-sided features pull)
    e = np.linalg.svd(np.eye(3) - np.outer(d, d))[0][:, :2]      # a basis of the plane normal to d
    uv = (X - c) @ e
    lo, hi = np.percentile(uv, [2.0, 98.0], axis=0)
    c = c + e @ (0.5 * (lo + hi))
    Y = X - c
    s = Y @ d
    rho = np.linalg.norm(Y - s[:, None] * d, axis=1)
    s0, s1 = np.percentile(s, [0.5, 99.5])
    r = float(np.percentile(rho, _RADIUS_PERCENTILE))
    for _ in range(2):  # the radius from the middle part, the ends from the radius
        a, b = s0 + _END_INSET * r, s1 - _END_INSET * r
        if a > b:
            a = b = 0.5 * (s0 + s1)
        mid = (s >= a) & (s <= b)
        if mid.sum() >= 0.25 * len(s):
            r = float(np.percentile(rho[mid], _RADIUS_PERCENTILE))
    a, b = s0 + _END_INSET * r, s1 - _END_INSET * r
    if a > b:
        a = b = 0.5 * (s0 + s1)
    A, B = c + a * d, c + b * d
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B)) and math.isfinite(r) and r > 0.0):
        return _bounding_capsule(X)
    return A, B, r


def _segment_distances(X: np.ndarray, caps: List[Seg]) -> np.ndarray:
    """``(n, K)`` distances of the points to the capsules' surfaces (negative inside)."""
    out = np.empty((len(X), len(caps)))
    for k, (a, b, r) in enumerate(caps):
        ba = b - a
        L2 = float(ba @ ba)
        t = np.clip((X - a) @ ba / L2, 0.0, 1.0) if L2 > 0.0 else np.zeros(len(X))
        out[:, k] = np.linalg.norm(X - a - t[:, None] * ba, axis=1) - r
    return out


def _fit_k(X: np.ndarray, K: int, iterations: int = 10) -> List[Seg]:
    """K capsules by k-segments (see the module docstring): the starting point of the search."""
    c = X.mean(axis=0)
    s = (X - c) @ _principal_axis(X - c)
    labels = np.minimum((np.argsort(np.argsort(s, kind="stable"), kind="stable") * K) // len(s), K - 1)
    caps: List[Seg] = []
    for _ in range(iterations):
        caps = [_fit_one(X[labels == k]) for k in range(K) if (labels == k).sum() >= 8]
        if not caps:
            return [_fit_one(X)]
        new = np.abs(_segment_distances(X, caps)).argmin(axis=1)
        if len(caps) == K and np.array_equal(new, labels):
            break
        labels = new
        K = len(caps)
    return caps


class _Silhouettes:
    """A link's silhouettes in orthographic views along :data:`_VIEWS`: a grid of
    :data:`_SIL_RES` pixels across the link's size per view, a pixel set where a surface point
    projects into it (the projection of a surface covers its silhouette), small gaps closed.
    :meth:`refine` moves capsules to maximise the intersection over union with them (the
    projection of a capsule is the 2D capsule of the projected segment, with the same radius)."""

    def __init__(self, X: np.ndarray) -> None:
        from scipy import ndimage

        self.size = float(np.linalg.norm(X.max(axis=0) - X.min(axis=0)))
        self.h = h = self.size / _SIL_RES
        pad = 0.12 * self.size  # room for capsules to reach beyond the silhouette
        bases, pix, target, view = [], [], [], []
        for i, v in enumerate(_VIEWS):
            E = np.linalg.svd(np.eye(3) - np.outer(v, v))[0][:, :2]   # the view's image plane
            uv = X @ E
            lo = uv.min(axis=0) - pad
            n = np.ceil((uv.max(axis=0) + pad - lo) / h).astype(np.int64) + 1
            # marked at 3x the resolution, then each pixel's centre sample: a pixel is in the
            # silhouette where its centre is (to a sixth of a pixel), not where any point falls
            S = _SIL_SUPERSAMPLE
            g = np.zeros(n * S, dtype=bool)
            ij = np.clip(np.floor((uv - lo) * (S / h)).astype(np.int64), 0, n * S - 1)
            g[ij[:, 0], ij[:, 1]] = True
            g = ndimage.binary_fill_holes(ndimage.binary_closing(g, structure=np.ones((3, 3))))
            g = g[S // 2::S, S // 2::S]
            ii, jj = np.meshgrid(np.arange(n[0]), np.arange(n[1]), indexing="ij")
            pix.append(lo + (np.stack([ii.ravel(), jj.ravel()], axis=1) + 0.5) * h)
            target.append(g.ravel())
            view.append(np.full(g.size, i))
            bases.append(E)
        self.E = np.array(bases)                      # (views, 3, 2)
        self.P = np.concatenate(pix)                  # pixel centres (N, 2)
        self.T = np.concatenate(target)               # the silhouettes (N,)
        self.view = np.concatenate(view)
        self.nT = int(np.count_nonzero(self.T))

    def _d2(self, idx: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """``(M, len(idx))`` squared distances of the pixels ``idx`` to M projected segments."""
        Ap = np.einsum("mi,vij->mvj", A, self.E)
        Bp = np.einsum("mi,vij->mvj", B, self.E)
        v = self.view[idx]
        ax, ay = Ap[:, v, 0], Ap[:, v, 1]
        bx, by = Bp[:, v, 0] - ax, Bp[:, v, 1] - ay
        px, py = self.P[idx, 0] - ax, self.P[idx, 1] - ay
        t = np.clip((px * bx + py * by) / np.maximum(bx * bx + by * by, 1e-18), 0.0, 1.0)
        dx, dy = px - t * bx, py - t * by
        return dx * dx + dy * dy

    def iou(self, caps: List[Seg]) -> float:
        every = np.arange(len(self.P))
        occ = np.zeros(len(self.P), dtype=bool)
        for a, b, r in caps:
            occ |= self._d2(every, a[None], b[None])[0] <= r * r
        i = int(np.count_nonzero(occ & self.T))
        return i / (int(np.count_nonzero(occ)) + self.nT - i)

    def refine(self, caps: List[Seg]) -> Tuple[List[Seg], float]:
        """Pattern search: each capsule's end points (and both together) moved along the axes and
        its radius changed by a step, the best move kept while it raises the IoU, the step halved
        from 8 % of the link's size to a quarter pixel.  A move of size ``step`` changes the
        occupancy only of pixels within ``2 step`` of the capsule's outline, so only those are
        evaluated."""
        caps = [(np.asarray(a, np.float64), np.asarray(b, np.float64), float(r)) for a, b, r in caps]
        every = np.arange(len(self.P))
        occ = [self._d2(every, a[None], b[None])[0] <= r * r for a, b, r in caps]
        cover = np.sum(occ, axis=0).astype(np.int64)
        inter = int(np.count_nonzero((cover > 0) & self.T))
        union = int(np.count_nonzero(cover > 0))
        best = inter / (union + self.nT - inter)
        eye, zero = np.eye(3), np.zeros((3, 3))
        dA = np.concatenate([eye, -eye, zero, zero, eye, -eye, np.zeros((2, 3))])
        dB = np.concatenate([zero, zero, eye, -eye, eye, -eye, np.zeros((2, 3))])
        dR = np.concatenate([np.zeros(18), [1.0, -1.0]])
        dist = [np.sqrt(self._d2(every, a[None], b[None])[0]) for a, b, r in caps]
        step = 0.08 * self.size
        while step >= 0.25 * self.h:
            improved = True
            while improved:
                improved = False
                for k, (a, b, r) in enumerate(caps):
                    idx = np.flatnonzero(np.abs(dist[k] - r) <= 2.0 * step)
                    if not idx.size:
                        continue
                    mine = occ[k][idx]
                    others = cover[idx] - mine > 0
                    old = others | mine
                    T = self.T[idx]
                    A, B = a + step * dA, b + step * dB
                    R = np.maximum(r + step * dR, 0.5 * self.h)
                    new = self._d2(idx, A, B) <= (R * R)[:, None]
                    O = new | others
                    dI = np.count_nonzero(O & T, axis=1) - np.count_nonzero(old & T)
                    dU = np.count_nonzero(O, axis=1) - np.count_nonzero(old)
                    iou = (inter + dI) / (union + dU + self.nT - inter - dI)
                    m = int(np.argmax(iou))
                    if iou[m] > best + 1e-12:
                        best, improved = float(iou[m]), True
                        inter, union = inter + int(dI[m]), union + int(dU[m])
                        caps[k] = (A[m], B[m], float(R[m]))
                        cover[idx] += new[m].astype(np.int64) - mine
                        occ[k] = occ[k].copy()
                        occ[k][idx] = new[m]
                        dist[k] = np.sqrt(self._d2(every, A[m][None], B[m][None])[0])
            step *= 0.5
        return caps, best


def _fit_link(X: np.ndarray) -> List[Seg]:
    """One to :data:`_MAX_PER_LINK` capsules for a link's surface points (see the module
    docstring); the bounding capsule where the fit fails."""
    X = X[np.all(np.isfinite(X), axis=1)]
    if not len(X):
        return []
    try:
        if len(X) < 8 or np.linalg.norm(X.max(axis=0) - X.min(axis=0)) < 1e-6:
            return [_bounding_capsule(X)]
        sil = _Silhouettes(X)
        fit = X[:: max(len(X) // _FIT_POINTS, 1)]
        best, score = sil.refine([_fit_one(fit)])
        for K in range(2, _MAX_PER_LINK + 1):
            if score >= _GOOD_IOU:
                break
            caps, s = sil.refine(_fit_k(fit, K))
            if len(caps) < K or s < score + _SPLIT_GAIN:
                break
            best, score = caps, s
        if not all(np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and math.isfinite(r) and r > 0
                   for a, b, r in best):
            raise FloatingPointError("non-finite capsule")
        bound = [_bounding_capsule(X)]
        return bound if sil.iou(bound) > score else best
    except (np.linalg.LinAlgError, ValueError, FloatingPointError, IndexError, ZeroDivisionError) as err:
        log.warning("capsule fit failed (%s); using the bounding capsule", err)
        return [_bounding_capsule(X)]
