"""Seeing what the robot sees: camera frames with the policy's feature points, drawn by OpenCV.

:func:`draw_feature_points` upscales a network-sized frame (e.g. 64x64) by an integer factor with
nearest-neighbour (so every camera pixel stays a visible block) and marks each spatial-softmax
feature point with a filled circle of its own colour (the same colour for the same point in every
frame), optionally above a caption line.  :func:`write_video` writes such frames as an MP4.

Coordinates are OpenCV's: ``uv[:, 0]`` = u = column, ``uv[:, 1]`` = v = row, in pixels of the
*input* frame with pixel centres on integers -- what :meth:`VisuomotorPolicy.feature_pixels` and
the TorchScript export's ``feature_pixels`` return.  Frames are RGB uint8 (H, W, 3) in and out;
only :func:`write_video` converts to OpenCV's BGR.

Only numpy and OpenCV are needed (no torch): a ROS node can draw the export's points with it.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Iterable, Optional, Tuple

import numpy as np

# 20 well-separated colours (RGB; Trubetskoy's "20 distinct colours"), point i gets _PALETTE[i];
# further points get golden-ratio hues
_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (67, 99, 216), (245, 130, 49), (145, 30, 180),
    (66, 212, 244), (240, 50, 230), (191, 239, 69), (250, 190, 212), (70, 153, 144),
    (220, 190, 255), (154, 99, 36), (255, 250, 200), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 216, 177), (0, 0, 117), (169, 169, 169)], dtype=np.uint8)

_SHIFT = 4                      # fractional bits of cv2 drawing coordinates (1/16 px)
_FONT = 0                       # cv2.FONT_HERSHEY_SIMPLEX


class VideoError(RuntimeError):
    """The video file could not be written (no encoder for the fourcc, unwritable path)."""


def point_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB: a distinct colour per feature point, depending only on its index."""
    import cv2

    out = np.zeros((n, 3), np.uint8)
    k = min(n, len(_PALETTE))
    out[:k] = _PALETTE[:k]
    for i in range(k, n):
        hsv = np.array([[[int(180 * ((i * 0.618033988749895) % 1.0)), 255, 255]]], np.uint8)
        out[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return out


@functools.lru_cache(maxsize=8)
def _color_tuples(n: int) -> tuple:
    return tuple(tuple(int(v) for v in c) for c in point_colors(n))


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor: (H, W, 3) -> (H*scale, W*scale, 3)."""
    import cv2

    frame = np.ascontiguousarray(frame)
    if scale == 1:
        return frame.copy()
    H, W = frame.shape[:2]
    return cv2.resize(frame, (W * scale, H * scale), interpolation=cv2.INTER_NEAREST_EXACT)


def to_display(uv: np.ndarray, scale: int) -> np.ndarray:
    """Input-frame pixel coordinates -> coordinates in the upscaled frame (pixel centres on
    integers in both: the centre of input pixel c is the centre of the block c*s .. c*s + s - 1)."""
    return (np.asarray(uv, np.float64) + 0.5) * scale - 0.5


def caption_height(width: int) -> int:
    """Height (even, for the video encoder) of the caption band under a frame ``width`` wide."""
    return 2 * int(np.ceil(max(14, min(24, width // 14)) / 2))


def draw_feature_points(frame: np.ndarray, uv: Optional[np.ndarray], scale: int = 4,
                        radius: Optional[int] = None, colors: Optional[np.ndarray] = None,
                        text: Optional[str] = None) -> np.ndarray:
    """A new RGB uint8 frame: ``frame`` (H, W, 3) upscaled ``scale`` times (nearest neighbour),
    each feature point ``uv[i] = (u, v)`` (input-frame pixels: column, row) drawn as a filled circle
    of colour ``colors[i]`` (default :func:`point_colors`) with a black rim, radius ``radius``
    display pixels (default ~0.75 ``scale``, at least 2).  Non-finite points are skipped; points
    off the frame are clipped.  With ``text``, a black band of :func:`caption_height` rows with the
    text in white is added under the frame: the result is (H*scale [+ band], W*scale, 3)."""
    import cv2

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    H, W = frame.shape[0] * scale, frame.shape[1] * scale
    h = caption_height(W) if text is not None else 0
    out = np.zeros((H + h, W, 3), np.uint8)
    out[:H] = upscale(frame, scale) if scale > 1 else frame
    if uv is not None and len(uv):
        one = 1 << _SHIFT
        d = to_display(np.asarray(uv, np.float64).reshape(-1, 2), scale) * one
        ok = np.all(np.isfinite(d) & (np.abs(d) < 1e6 * one), axis=1)
        cols = (_color_tuples(len(d)) if colors is None
                else [tuple(int(v) for v in c) for c in np.asarray(colors, np.uint8).reshape(-1, 3)])
        r = (max(2, int(round(0.75 * scale))) if radius is None else int(radius)) * one
        view = out[:H]                       # points never spill into the caption band
        for (x, y), c, good in zip(np.rint(np.where(ok[:, None], d, 0)).astype(int).tolist(), cols, ok):
            if good:
                cv2.circle(view, (x, y), r + one, (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
                cv2.circle(view, (x, y), r, c, -1, cv2.LINE_AA, _SHIFT)
    if text is not None:
        size = 0.4 * h / 14
        (tw, th), _ = cv2.getTextSize(text, _FONT, size, 1)
        if tw > W - 6:
            size *= (W - 6) / tw
            (tw, th), _ = cv2.getTextSize(text, _FONT, size, 1)
        cv2.putText(out[H:], text, (3, (h + th) // 2), _FONT, size, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_video(path: str | Path, frames_rgb: Iterable[np.ndarray], fps: float,
                fourcc: str = "mp4v") -> Tuple[Path, int]:
    """Write RGB uint8 frames (all the same size) to ``path`` with OpenCV's VideoWriter; returns
    (path, number of frames).  ``mp4v`` is MPEG-4 part 2, which the opencv-python wheels can encode
    (they have no H.264 encoder): cv2.VideoCapture, ffmpeg, VLC, mpv and most desktop players read
    it, web browsers mostly do not (``ffmpeg -i in.mp4 -c:v libx264 out.mp4`` converts it).

    Written to a temporary file in the same directory and renamed, so a failure leaves no
    half-written video.  Odd frame sizes are padded by one black row / column (the encoder needs
    even sizes).  Raises :class:`VideoError` if the writer cannot be opened and ValueError for an
    empty sequence or frames of different sizes or types."""
    import cv2

    from .atomic import fsync_dir

    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not path.parent.is_dir():
        raise VideoError(f"cannot write the video {path}: directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix or '.mp4'}")
    writer, shape, n = None, None, 0
    try:
        for f in frames_rgb:
            f = np.asarray(f)
            if shape is None:
                if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                    raise ValueError(f"video frames must be RGB uint8 (H, W, 3), got {f.dtype} {f.shape}")
                shape = f.shape
                H, W = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (W, H))
                if not writer.isOpened():
                    raise VideoError(f"OpenCV cannot open a {fourcc!r} video writer for {path} "
                                     f"({W}x{H} at {fps:g} fps; OpenCV {cv2.__version__} without "
                                     "an encoder for it?)")
            elif f.shape != shape or f.dtype != np.uint8:
                raise ValueError(f"video frame {n} is {f.dtype} {f.shape}, the first was uint8 {shape}")
            if (H, W) != shape[:2]:
                f = np.pad(f, ((0, H - shape[0]), (0, W - shape[1]), (0, 0)))
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            n += 1
        if n == 0:
            raise ValueError("no frames to write")
        writer.release()
        writer = None
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise VideoError(f"OpenCV wrote no video to {path} (fourcc {fourcc!r})")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
        raise
    return path, n


def read_video(path: str | Path) -> Tuple[np.ndarray, float]:
    """(frames (N, H, W, 3) RGB uint8, fps) of a video file, via cv2.VideoCapture (for tests and
    for pulling a still out of an evaluation video)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"OpenCV cannot open the video {path}")
    frames = []
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        while True:
            ok, f = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return (np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)), fps


def encode_png(frame_rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 frame."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise VideoError("OpenCV could not encode the PNG")
    return buf.tobytes()
