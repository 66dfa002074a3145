"""gps_msgs <-> numpy conversions (no rclpy import: testable without ROS).

Every function reads or writes message *fields* by name, so it works on the generated gps_msgs /
sensor_msgs classes and equally on the plain stand-ins of this module (:class:`PlainTypes`), which
the tests and the proxies' pure logic use.  Arrays travel flattened in row-major (C) order with
explicit shape fields (see ``gps_msgs/msg/*.msg``); a size mismatch raises :class:`ShapeError`
naming the message, the field and the expected shape.

rclpy's generated setters for ``float64[]`` accept an ``array.array('d')`` without an element-wise
check, so arrays are written as ``array.array`` built from the numpy buffer (fast at 500 Hz);
reading uses the buffer protocol.
"""
from __future__ import annotations

import array
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)


class ShapeError(ValueError):
    """A message array whose length disagrees with its shape fields."""


# --- flat arrays ---------------------------------------------------------------------------------
def pack(a) -> array.array:
    """numpy array (any shape) -> ``array.array('d')`` in row-major order."""
    return array.array("d", np.ascontiguousarray(a, dtype=np.float64).tobytes())


def unpack(flat, shape: Sequence[int], what: str = "array") -> np.ndarray:
    """A flattened float64 sequence -> array of ``shape`` (a copy), with a clear size error."""
    a = np.array(flat, dtype=np.float64)
    shape = tuple(int(s) for s in shape)
    expected = int(np.prod(shape)) if shape else 1
    if a.ndim != 1 or a.size != expected:
        dims = " * ".join(str(s) for s in shape) or "1"
        raise ShapeError(f"{what} has {a.size} values, expected {dims} = {expected} "
                         f"(shape {shape}, row-major)")
    return a.reshape(shape)


def unpack_optional(flat, shape: Sequence[int], what: str) -> Optional[np.ndarray]:
    """Like :func:`unpack`, but an empty sequence means "not given" (None)."""
    if len(flat) == 0:
        return None
    return unpack(flat, shape, what)


# --- plain stand-ins for the generated message classes ------------------------------------------
@dataclass
class Time:
    sec: int = 0
    nanosec: int = 0


@dataclass
class Header:
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class Image:
    header: Header = field(default_factory=Header)
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    data: Any = field(default_factory=lambda: array.array("B"))


@dataclass
class LinearGaussianController:
    horizon: int = 0
    dx: int = 0
    du: int = 0
    gain: Any = field(default_factory=lambda: array.array("d"))
    bias: Any = field(default_factory=lambda: array.array("d"))
    covariance_cholesky: Any = field(default_factory=lambda: array.array("d"))
    x_ref: Any = field(default_factory=lambda: array.array("d"))
    u_ref: Any = field(default_factory=lambda: array.array("d"))


@dataclass
class LinearGaussianDynamics:
    horizon: int = 0
    dx: int = 0
    du: int = 0
    fm: Any = field(default_factory=lambda: array.array("d"))
    fv: Any = field(default_factory=lambda: array.array("d"))
    dyn_covar: Any = field(default_factory=lambda: array.array("d"))
    x0mu: Any = field(default_factory=lambda: array.array("d"))
    x0sigma: Any = field(default_factory=lambda: array.array("d"))


@dataclass
class QuadraticCost:
    horizon: int = 0
    dxu: int = 0
    cm: Any = field(default_factory=lambda: array.array("d"))
    cv: Any = field(default_factory=lambda: array.array("d"))
    cc: Any = field(default_factory=lambda: array.array("d"))


@dataclass
class LQRSolution:
    controller: LinearGaussianController = field(default_factory=LinearGaussianController)
    eta: float = 0.0
    kl: float = 0.0
    epsilon: float = 0.0
    converged: bool = False
    iterations: int = 0
    dxu: int = 0
    mu: Any = field(default_factory=lambda: array.array("d"))
    sigma: Any = field(default_factory=lambda: array.array("d"))


@dataclass
class Trajectory:
    header: Header = field(default_factory=Header)
    condition: int = 0
    horizon: int = 0
    dx: int = 0
    du: int = 0
    states: Any = field(default_factory=lambda: array.array("d"))
    actions: Any = field(default_factory=lambda: array.array("d"))
    stamps: List[Time] = field(default_factory=list)
    has_seed: bool = False
    seed: int = 0
    source: str = ""
    discarded: bool = False
    reason: str = ""
    images: List[Image] = field(default_factory=list)
    image_paths: List[str] = field(default_factory=list)


@dataclass
class RunTrialGoal:
    SOURCE_CONTROLLER = 0
    SOURCE_POLICY = 1
    source: int = 0
    controller: LinearGaussianController = field(default_factory=LinearGaussianController)
    policy_checkpoint: str = ""
    policy_covariance_cholesky: Any = field(default_factory=lambda: array.array("d"))
    condition: int = 0
    horizon: int = 0
    noise_seed: int = 0
    noise: Any = field(default_factory=lambda: array.array("d"))
    record_images: bool = False


PlainTypes = SimpleNamespace(
    Time=Time, Header=Header, Image=Image, LinearGaussianController=LinearGaussianController,
    LinearGaussianDynamics=LinearGaussianDynamics, QuadraticCost=QuadraticCost,
    LQRSolution=LQRSolution, Trajectory=Trajectory, RunTrialGoal=RunTrialGoal)
"""The plain stand-ins, in the shape :func:`ros_types` returns the generated classes."""


def ros_types() -> SimpleNamespace:
    """The generated message classes (imports gps_msgs / sensor_msgs; ROS machines only)."""
    from builtin_interfaces.msg import Time as RTime
    from gps_msgs.action import RunTrial
    from gps_msgs.msg import LinearGaussianController as RLGC
    from gps_msgs.msg import LinearGaussianDynamics as RLGD
    from gps_msgs.msg import LQRSolution as RLQR
    from gps_msgs.msg import QuadraticCost as RQC
    from gps_msgs.msg import Trajectory as RTraj
    from sensor_msgs.msg import Image as RImage
    from std_msgs.msg import Header as RHeader

    return SimpleNamespace(Time=RTime, Header=RHeader, Image=RImage, LinearGaussianController=RLGC,
                           LinearGaussianDynamics=RLGD, QuadraticCost=RQC, LQRSolution=RLQR,
                           Trajectory=RTraj, RunTrialGoal=RunTrial.Goal)


# --- controllers -----------------------------------------------------------------------------------
def controller_to_msg(ctrl, msg, x_ref: Optional[np.ndarray] = None,
                      u_ref: Optional[np.ndarray] = None):
    """Fill a LinearGaussianController message from a
    :class:`gps_ros.control.LinearGaussianController`; returns ``msg``."""
    T, dU, dX = ctrl.K.shape
    msg.horizon, msg.dx, msg.du = T, dX, dU
    msg.gain = pack(ctrl.K)
    msg.bias = pack(ctrl.k)
    msg.covariance_cholesky = pack(ctrl.chol_pol_covar)
    if x_ref is not None and np.shape(x_ref) != (T, dX):
        raise ShapeError(f"x_ref has shape {np.shape(x_ref)}, expected ({T}, {dX})")
    if u_ref is not None and np.shape(u_ref) != (T, dU):
        raise ShapeError(f"u_ref has shape {np.shape(u_ref)}, expected ({T}, {dU})")
    msg.x_ref = pack(x_ref) if x_ref is not None else array.array("d")
    msg.u_ref = pack(u_ref) if u_ref is not None else array.array("d")
    return msg


def controller_from_msg(msg):
    """A :class:`gps_ros.control.LinearGaussianController` from its message (Σ = L Lᵀ)."""
    from gps_ros.control.lin_gauss import LinearGaussianController as LGC

    T, dX, dU = int(msg.horizon), int(msg.dx), int(msg.du)
    if T < 1 or dX < 1 or dU < 1:
        raise ShapeError(f"LinearGaussianController: horizon, dx, du must be >= 1, got {T}, {dX}, {dU}")
    K = unpack(msg.gain, (T, dU, dX), "LinearGaussianController.gain")
    k = unpack(msg.bias, (T, dU), "LinearGaussianController.bias")
    L = unpack(msg.covariance_cholesky, (T, dU, dU), "LinearGaussianController.covariance_cholesky")
    if not np.allclose(L, np.tril(L)):
        raise ShapeError("LinearGaussianController.covariance_cholesky must be lower triangular")
    diag = np.diagonal(L, axis1=-2, axis2=-1)
    if not (np.isfinite(L).all() and np.all(diag > 0)):
        raise ShapeError("LinearGaussianController.covariance_cholesky needs a finite, positive diagonal")
    if not (np.isfinite(K).all() and np.isfinite(k).all()):
        raise ShapeError("LinearGaussianController.gain and bias must be finite")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ctrl = LGC(K, k, L @ np.swapaxes(L, -1, -2), chol_pol_covar=L)
    if not (np.isfinite(ctrl.pol_covar).all() and np.isfinite(ctrl.inv_pol_covar).all()):
        raise ShapeError("LinearGaussianController.covariance_cholesky gives a covariance or "
                         "precision that is not finite")
    return ctrl


def controller_reference_from_msg(msg) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The optional reference trajectory (x_ref (T, dX), u_ref (T, dU)); None where empty."""
    T, dX, dU = int(msg.horizon), int(msg.dx), int(msg.du)
    return (unpack_optional(msg.x_ref, (T, dX), "LinearGaussianController.x_ref"),
            unpack_optional(msg.u_ref, (T, dU), "LinearGaussianController.u_ref"))


# --- dynamics and costs ----------------------------------------------------------------------------
def dynamics_to_msg(dyn, msg):
    T, dX, dXU = dyn.Fm.shape
    msg.horizon, msg.dx, msg.du = T, dX, dXU - dX
    msg.fm = pack(dyn.Fm)
    msg.fv = pack(dyn.fv)
    msg.dyn_covar = pack(dyn.dyn_covar)
    msg.x0mu = pack(dyn.x0mu)
    msg.x0sigma = pack(dyn.x0sigma)
    return msg


def dynamics_from_msg(msg):
    from gps_ros.dynamics.linear_gaussian import LinearGaussianDynamics as LGD

    T, dX, dU = int(msg.horizon), int(msg.dx), int(msg.du)
    w = "LinearGaussianDynamics."
    return LGD(unpack(msg.fm, (T, dX, dX + dU), w + "fm"), unpack(msg.fv, (T, dX), w + "fv"),
               unpack(msg.dyn_covar, (T, dX, dX), w + "dyn_covar"),
               unpack(msg.x0mu, (dX,), w + "x0mu"), unpack(msg.x0sigma, (dX, dX), w + "x0sigma"))


def cost_to_msg(cost, msg):
    T, dXU = cost.cv.shape
    msg.horizon, msg.dxu = T, dXU
    msg.cm, msg.cv, msg.cc = pack(cost.Cm), pack(cost.cv), pack(cost.cc)
    return msg


def cost_from_msg(msg):
    from gps_ros.control.lqr import QuadraticCost as QC

    T, n = int(msg.horizon), int(msg.dxu)
    return QC(unpack(msg.cm, (T, n, n), "QuadraticCost.cm"), unpack(msg.cv, (T, n), "QuadraticCost.cv"),
              unpack(msg.cc, (T,), "QuadraticCost.cc"))


def lqr_result_to_msg(res, msg):
    """Fill an LQRSolution message (its ``controller`` field is filled in place)."""
    controller_to_msg(res.controller, msg.controller)
    msg.eta, msg.kl, msg.epsilon = float(res.eta), float(res.kl), float(res.epsilon)
    msg.converged, msg.iterations = bool(res.converged), int(res.iterations)
    mu = np.asarray(res.mu)
    msg.dxu = int(mu.shape[-1])
    msg.mu, msg.sigma = pack(mu), pack(res.sigma)
    return msg


def lqr_result_from_msg(msg):
    from gps_ros.control.lqr import LQRResult

    ctrl = controller_from_msg(msg.controller)
    T, n = ctrl.T, int(msg.dxu)
    return LQRResult(ctrl, float(msg.eta), float(msg.kl), float(msg.epsilon), bool(msg.converged),
                     int(msg.iterations), unpack(msg.mu, (T, n), "LQRSolution.mu"),
                     unpack(msg.sigma, (T, n, n), "LQRSolution.sigma"))


# --- images and time -----------------------------------------------------------------------------
def image_to_msg(img: np.ndarray, msg, stamp=None, frame_id: str = "camera",
                 encoding: str = "rgb8"):
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8)."""
    from gps_ros.image_pipeline import ImageError, encode_raw

    img = np.ascontiguousarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ShapeError(f"image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    try:
        raw = encode_raw(img, encoding)
    except ImageError as err:
        raise ShapeError(str(err)) from None
    H, W = img.shape[:2]
    ch = 1 if raw.ndim == 2 else raw.shape[2]
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = H, W, encoding, 0, ch * W
    msg.data = array.array("B", raw.tobytes())
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def compressed_image_to_msg(img: np.ndarray, msg, stamp=None, frame_id: str = "camera",
                            fmt: str = "jpeg", quality: int = 90):
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (JPEG or PNG, via OpenCV)."""
    from gps_ros.image_pipeline import encode_compressed

    msg.format = fmt
    msg.data = array.array("B", encode_compressed(img, fmt, quality))
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def image_from_msg(msg, pipeline=None) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or sensor_msgs/CompressedImage (JPEG,
    PNG) -> (H, W, 3) uint8 RGB, through ``pipeline`` (:class:`gps_ros.image_pipeline.ImagePipeline`:
    crop + area resize to the network's size) when given, else at the message's own size."""
    from gps_ros.image_pipeline import ImageError, ImagePipeline, decode_compressed

    try:
        if hasattr(msg, "format") and not hasattr(msg, "encoding"):       # CompressedImage
            if pipeline is None:
                return decode_compressed(bytes(msg.data), msg.format)
            return pipeline.from_compressed(bytes(msg.data), msg.format)
        W, H = int(msg.width), int(msg.height)
        pipe = pipeline or ImagePipeline(max(W, 1), max(H, 1))
        return pipe.from_raw(bytes(msg.data), W, H, msg.encoding, int(msg.step))
    except ImageError as err:
        raise ShapeError(str(err)) from None


def seconds_to_time(t: float, msg):
    sec = int(np.floor(t))
    msg.sec, msg.nanosec = sec, min(int(round((t - sec) * 1e9)), 999_999_999)
    return msg


def time_to_seconds(msg) -> float:
    return float(msg.sec) + 1e-9 * float(msg.nanosec)


# --- trials ---------------------------------------------------------------------------------------
def trial_to_msg(X: np.ndarray, U: np.ndarray, meta, msg, types=PlainTypes,
                 stamps: Optional[Sequence[float]] = None, images: Optional[np.ndarray] = None,
                 image_paths: Sequence[str] = ()):
    """One trial (X (T, dX), U (T, dU), a :class:`gps_ros.sample.TrialMeta`) -> Trajectory msg."""
    X, U = np.asarray(X), np.asarray(U)
    if X.ndim != 2 or U.ndim != 2 or X.shape[0] != U.shape[0]:
        raise ShapeError(f"trial X {X.shape} and U {U.shape} must be (T, dX) and (T, dU)")
    T = X.shape[0]
    msg.condition, msg.horizon, msg.dx, msg.du = int(meta.condition), T, X.shape[1], U.shape[1]
    msg.states, msg.actions = pack(X), pack(U)
    msg.stamps = [seconds_to_time(s, types.Time()) for s in (stamps if stamps is not None else ())]
    msg.has_seed = meta.seed is not None
    msg.seed = int(meta.seed) if meta.seed is not None else 0
    msg.source = str(meta.source)
    msg.discarded, msg.reason = bool(meta.discarded), str(meta.reason)
    msg.images = ([image_to_msg(im, types.Image()) for im in images] if images is not None else [])
    msg.image_paths = list(image_paths)
    return msg


def _read_frames(path: str, what: str) -> np.ndarray:
    """The array in one image file: .npz (its ``image`` array, or its only one), .npy, or any
    format OpenCV reads (e.g. one PNG per step, as RGB)."""
    p = str(path)
    try:
        if p.endswith(".npz"):
            with np.load(p, allow_pickle=False) as z:
                if "image" in z.files:
                    return z["image"]
                if len(z.files) != 1:
                    raise ShapeError(f"{what}: {p} holds arrays {z.files}, expected 'image'")
                return z[z.files[0]]
        if p.endswith(".npy"):
            return np.load(p, allow_pickle=False)
        import cv2

        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise ShapeError(f"{what}: cannot read {p} (not an image file OpenCV reads)")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    except ShapeError:
        raise
    except Exception as err:  # noqa: BLE001 - missing, unreadable, truncated: one line
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ShapeError(f"{what}: cannot read {p} ({type(err).__name__}: {detail})") from None


def load_image_paths(paths: Sequence[str], T: int, what: str = "Trajectory.image_paths") -> np.ndarray:
    """The (T, H, W, 3) uint8 frames of a trial written to disk: one file holding all T frames
    (what :meth:`gps_ros.ros.trial.TrialRecorder.result` writes) or T files of one frame each."""
    paths = [str(p) for p in paths]
    if len(paths) == 1:
        frames = _read_frames(paths[0], what)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != T or frames.shape[3] != 3:
            raise ShapeError(f"{what}: {paths[0]} holds {frames.shape} {frames.dtype}, expected "
                             f"(T, H, W, 3) uint8 with T={T}")
        return frames
    if len(paths) != T:
        raise ShapeError(f"Trajectory has {len(paths)} image_paths for horizon {T} (expected one "
                         f"file of all frames or one per step)")
    frames = []
    for p in paths:
        f = _read_frames(p, what)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ShapeError(f"{what}: {p} holds {f.shape} {f.dtype}, expected (H, W, 3) uint8")
        if frames and f.shape != frames[0].shape:
            raise ShapeError(f"{what}: {p} holds {f.shape}, the first frame {frames[0].shape}")
        frames.append(f)
    return np.stack(frames)


def trial_from_msg(msg):
    """Trajectory msg -> (X (T, dX), U (T, dU), TrialMeta, images (T, H, W, 3) uint8 or None).

    The frames come inline (``images``) or from the files in ``image_paths``; those paths are
    kept in ``TrialMeta.image_paths`` so that forwarding the trial re-sends them, not the frames.
    """
    from gps_ros.sample import TrialMeta

    T, dX, dU = int(msg.horizon), int(msg.dx), int(msg.du)
    X = unpack(msg.states, (T, dX), "Trajectory.states")
    U = unpack(msg.actions, (T, dU), "Trajectory.actions")
    paths = tuple(str(p) for p in getattr(msg, "image_paths", ()))
    meta = TrialMeta(condition=int(msg.condition), seed=int(msg.seed) if msg.has_seed else None,
                     discarded=bool(msg.discarded), reason=str(msg.reason), source=str(msg.source),
                     image_paths=paths)
    images = None
    if len(msg.images) and paths:
        raise ShapeError(f"Trajectory has both {len(msg.images)} inline images and {len(paths)} "
                         f"image_paths ({paths[0]}); a trial's frames come one way only")
    if len(msg.images):
        if len(msg.images) != T:
            raise ShapeError(f"Trajectory has {len(msg.images)} images for horizon {T}")
        images = np.stack([image_from_msg(m) for m in msg.images])
    elif paths:
        images = load_image_paths(paths, T)
    return X, U, meta, images


def trajectories_to_msgs(tr, types=PlainTypes, image_key: Optional[str] = "image") -> list:
    """A :class:`gps_ros.sample.Trajectories` -> one Trajectory message per trial.

    A trial whose frames are on disk (``meta.image_paths``, set by :func:`trial_from_msg`) is sent
    with those paths, not the frames; otherwise ``obs[image_key]`` travels inline.
    ``image_key=None``: no frames at all (e.g. for the dynamics fit, which never uses them)."""
    imgs = tr.obs.get(image_key) if image_key is not None else None
    out = []
    for i in range(tr.N):
        paths = tuple(getattr(tr.meta[i], "image_paths", ()) or ()) if image_key is not None else ()
        out.append(trial_to_msg(tr.X[i], tr.U[i], tr.meta[i], types.Trajectory(), types,
                                images=None if (imgs is None or paths) else imgs[i],
                                image_paths=paths))
    return out


def msgs_to_trajectories(msgs: Sequence, image_key: str = "image", require_images: bool = False):
    """Trajectory messages (same T, dX, dU) -> one :class:`gps_ros.sample.Trajectories`.

    Frames must come with every trial or with none: a kept trial without frames among trials
    with frames is a :class:`ShapeError` (a discarded one, e.g. aborted before its last frame,
    gets blank frames, since it is never trained on).  ``require_images``: no frames at all is
    an error too (the samplers were asked for them)."""
    from gps_ros.sample import Trajectories

    if not msgs:
        raise ShapeError("no trajectories")
    parts = [trial_from_msg(m) for m in msgs]
    shapes = {(p[0].shape, p[1].shape) for p in parts}
    if len(shapes) != 1:
        raise ShapeError(f"trajectories of different shapes cannot be stacked: {sorted(shapes)}")
    missing = [i for i, p in enumerate(parts) if p[3] is None and not p[2].discarded]
    have = [p[3] for p in parts if p[3] is not None]
    if missing and (have or require_images):
        why = (f"{len(have)} of the {len(parts)} trials have frames" if have
               else "the samplers were asked to record them")
        raise ShapeError(f"trial{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(str(i) for i in missing)} of condition "
                         f"{parts[missing[0]][2].condition} came with no camera frames but {why} "
                         f"(is the camera publishing on every sampler?)")
    obs = {}
    if have:
        frame_shapes = {f.shape for f in have}
        if len(frame_shapes) != 1:
            raise ShapeError(f"trials' camera frames differ in shape: {sorted(frame_shapes)}")
        blank = np.zeros_like(have[0])
        obs[image_key] = np.stack([p[3] if p[3] is not None else blank for p in parts])
        if len(have) < len(parts):
            log.warning("%d discarded trial(s) without camera frames get blank frames",
                        len(parts) - len(have))
    return Trajectories(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]),
                        [p[2] for p in parts], obs)


def split_by_condition(msgs: Sequence, num_conditions: int, image_key: str = "image",
                       require_images: bool = False) -> list:
    """Trajectory messages of all conditions -> one Trajectories per condition (in order)."""
    groups = [[] for _ in range(num_conditions)]
    for m in msgs:
        c = int(m.condition)
        if not 0 <= c < num_conditions:
            raise ShapeError(f"trajectory condition {c} out of range 0..{num_conditions - 1}")
        groups[c].append(m)
    for c, g in enumerate(groups):
        if not g:
            raise ShapeError(f"no trajectories for condition {c}")
    return [msgs_to_trajectories(g, image_key, require_images) for g in groups]


# --- joint states and commands --------------------------------------------------------------------
class JointOrder:
    """Reorders sensor_msgs/JointState arrays into a fixed joint order (cached by name list)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._key: Optional[tuple] = None
        self._idx: Optional[np.ndarray] = None

    def indices(self, msg_names: Sequence[str]) -> np.ndarray:
        key = tuple(msg_names)
        if key != self._key:
            missing = [n for n in self.names if n not in key]
            if missing:
                raise ShapeError(f"joint_states lacks joints {missing} (has {list(key)})")
            self._idx = np.array([key.index(n) for n in self.names])
            self._key = key
        return self._idx

    def extract(self, msg) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(position (n,), velocity (n,) or None) of a JointState-like message."""
        idx = self.indices(msg.name)
        pos = np.asarray(msg.position, dtype=np.float64)
        if pos.size <= idx.max():
            raise ShapeError(f"joint_states has {pos.size} positions for {len(msg.name)} names")
        vel = np.asarray(msg.velocity, dtype=np.float64) if len(msg.velocity) else None
        if vel is not None and vel.size <= idx.max():
            raise ShapeError(f"joint_states has {vel.size} velocities for {len(msg.name)} names")
        return pos[idx], (vel[idx] if vel is not None else None)


def command_to_msg(u: np.ndarray, msg):
    """Fill a std_msgs/Float64MultiArray (forward command controller input) with ``u``."""
    msg.data = pack(u)
    return msg


def command_from_msg(msg, n: int) -> np.ndarray:
    return unpack(msg.data, (n,), "Float64MultiArray.data")


def run_trial_goal(goal, condition: int, horizon: int, noise: Optional[np.ndarray], seed: int,
                   controller=None, policy_checkpoint: str = "",
                   policy_chol: Optional[np.ndarray] = None, record_images: bool = False):
    """Fill a RunTrial goal: a local controller, or a policy export path (+ its noise factor)."""
    if (controller is None) == (not policy_checkpoint):
        raise ValueError("a RunTrial goal needs exactly one of controller and policy_checkpoint")
    goal.condition, goal.horizon = int(condition), int(horizon)
    goal.noise_seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    goal.record_images = bool(record_images)
    if controller is not None:
        goal.source = type(goal).SOURCE_CONTROLLER  # constants live on the class
        if controller.T != horizon:
            raise ShapeError(f"controller horizon {controller.T} != goal horizon {horizon}")
        controller_to_msg(controller, goal.controller)
        goal.policy_checkpoint = ""
    else:
        goal.source = type(goal).SOURCE_POLICY
        goal.policy_checkpoint = str(policy_checkpoint)
    goal.policy_covariance_cholesky = (pack(policy_chol) if policy_chol is not None
                                       else array.array("d"))
    goal.noise = pack(noise) if noise is not None else array.array("d")
    return goal
