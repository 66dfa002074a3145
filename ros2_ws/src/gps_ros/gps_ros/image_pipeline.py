"""Camera frames -> the network's input, with OpenCV (no ROS).

Real cameras publish 640x480 or larger, in ``bgr8``, ``rgb8``, ``bgra8``, ``rgba8``, ``mono8``, or
compressed (JPEG / PNG, ``sensor_msgs/CompressedImage``).  :class:`ImagePipeline` turns any of them
into the ``(height, width, 3) uint8`` RGB frame the policy network takes:

1. decode (``cv2.imdecode`` for compressed data; raw data is viewed in place, honouring ``step``),
2. crop to the configured region of interest ``[x, y, w, h]`` (source pixels), by default the
   centred region with the network's aspect ratio (a 640x480 camera -> its middle 480x480),
3. resize with area interpolation (``cv2.INTER_AREA``: each output pixel averages the source
   pixels it covers) to the network's size,
4. convert the colour order to RGB (a channel permutation / drop / replication, which commutes
   exactly with the resize, so it runs on the few output pixels).

The sampler (recorded training frames) and the policy node (deployment) build the same pipeline
from the experiment config's ``agent.camera`` section, so a policy sees the same pixels in both.
:meth:`ImagePipeline.is_stale` is the camera's watchdog: a frame older than ``max_age`` relative to
the joint state it is used with must not drive the arm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

#: raw encodings (sensor_msgs/image_encodings) -> (channels, conversion to RGB or None)
RAW_ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}


class ImageError(ValueError):
    """A frame that cannot be converted (unknown encoding, wrong size, undecodable data)."""


@dataclass(frozen=True)
class ImagePipeline:
    """The configured transform of camera frames into network input.

    Args:
        width, height: the network's input size (pixels).

        crop: ``(x, y, w, h)`` region of interest in source pixels, or None for the centred region
            with the output's aspect ratio.

        max_age: seconds; :meth:`is_stale` for frames older than this relative to the joint state.
    """

    width: int
    height: int
    crop: Optional[Tuple[int, int, int, int]] = None
    max_age: float = 0.1

    def __post_init__(self) -> None:
        if int(self.width) < 1 or int(self.height) < 1:
            raise ImageError(f"network input size must be positive, got {self.width}x{self.height}")
        if self.crop is not None:
            c = tuple(int(v) for v in self.crop)
            if len(c) != 4 or c[0] < 0 or c[1] < 0 or c[2] < 1 or c[3] < 1:
                raise ImageError(f"crop must be [x, y, w, h] with x, y >= 0 and w, h >= 1, got "
                                 f"{list(self.crop)}")
            object.__setattr__(self, "crop", c)
        if not self.max_age > 0:
            raise ImageError(f"max_age must be > 0 s, got {self.max_age}")

    @staticmethod
    def from_camera(camera, max_age: Optional[float] = None) -> "ImagePipeline":
        """From a config's ``agent.camera`` section (or anything with width / height / crop /
        max_frame_age attributes)."""
        crop = getattr(camera, "crop", None)
        age = max_age if max_age is not None else getattr(camera, "max_frame_age", 0.1)
        return ImagePipeline(int(camera.width), int(camera.height),
                             tuple(crop) if crop else None, float(age))

    # --- geometry ---------------------------------------------------------------------------------
    def crop_box(self, src_width: int, src_height: int) -> Tuple[int, int, int, int]:
        """The region ``(x, y, w, h)`` taken from a ``src_width`` x ``src_height`` frame."""
        if self.crop is not None:
            x, y, w, h = self.crop
            if x + w > src_width or y + h > src_height:
                raise ImageError(f"crop [x={x}, y={y}, w={w}, h={h}] does not fit a "
                                 f"{src_width}x{src_height} camera frame")
            return x, y, w, h
        aspect = self.width / self.height
        w = min(src_width, int(round(src_height * aspect)))
        h = min(src_height, int(round(w / aspect)))
        return (src_width - w) // 2, (src_height - h) // 2, w, h

    def _fit(self, img: np.ndarray) -> np.ndarray:
        x, y, w, h = self.crop_box(img.shape[1], img.shape[0])
        roi = img[y:y + h, x:x + w]
        if (w, h) == (self.width, self.height):
            return roi
        interp = cv2.INTER_AREA if (w >= self.width and h >= self.height) else cv2.INTER_LINEAR
        out = cv2.resize(roi, (self.width, self.height), interpolation=interp)
        return out if out.ndim == 3 else out[:, :, None]

    @staticmethod
    def _to_rgb(img: np.ndarray, conversion) -> np.ndarray:
        if conversion is None:
            return np.ascontiguousarray(img)
        return cv2.cvtColor(np.ascontiguousarray(img), conversion)

    # --- conversions ------------------------------------------------------------------------------
    def from_raw(self, data, width: int, height: int, encoding: str,
                 step: Optional[int] = None) -> np.ndarray:
        """Raw pixel bytes (``sensor_msgs/Image`` fields) -> network frame (H, W, 3) uint8 RGB."""
        if encoding not in RAW_ENCODINGS:
            raise ImageError(f"image encoding {encoding!r} not supported "
                             f"({', '.join(RAW_ENCODINGS)}, or a CompressedImage)")
        ch, conversion = RAW_ENCODINGS[encoding]
        width, height = int(width), int(height)
        if width < 1 or height < 1:
            raise ImageError(f"{encoding} image of {width}x{height} pixels is empty")
        step = int(step) if step else ch * width
        buf = np.frombuffer(data, dtype=np.uint8)
        if step < ch * width or buf.size != height * step:
            raise ImageError(f"{encoding} image data has {buf.size} bytes, expected height*step = "
                             f"{height}*{step} for {width}x{height}")
        img = buf.reshape(height, step)[:, :ch * width].reshape(height, width, ch)
        return self._to_rgb(self._fit(img), conversion)

    def from_array(self, img: np.ndarray, encoding: str = "rgb8") -> np.ndarray:
        """An (h, w, c) uint8 array in ``encoding`` -> network frame."""
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise ImageError(f"camera frames must be uint8, got {img.dtype}")
        if img.ndim == 2:
            img = img[:, :, None]
        ch, conversion = RAW_ENCODINGS.get(encoding, (None, None))
        if ch is None or img.ndim != 3 or img.shape[2] != ch or 0 in img.shape:
            raise ImageError(f"array of shape {img.shape} is not a {encoding!r} image")
        return self._to_rgb(self._fit(img), conversion)

    def from_compressed(self, data, fmt: str = "") -> np.ndarray:
        """JPEG / PNG bytes (``sensor_msgs/CompressedImage``) -> network frame."""
        return self._to_rgb(self._fit(_imdecode(data, fmt)), cv2.COLOR_BGR2RGB)

    def is_stale(self, frame_stamp: Optional[float], joint_stamp: float) -> bool:
        """True when the frame is missing or older than ``max_age`` relative to ``joint_stamp``."""
        return frame_stamp is None or not (joint_stamp - frame_stamp <= self.max_age)


def _imdecode(data, fmt: str = "") -> np.ndarray:
    """JPEG / PNG bytes -> (h, w, 3) uint8 BGR, or :class:`ImageError`."""
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ImageError(f"could not decode a {len(buf)}-byte compressed image"
                         f"{f' (format {fmt!r})' if fmt else ''}")
    return img


def decode_compressed(data, fmt: str = "") -> np.ndarray:
    """JPEG / PNG bytes -> the whole frame, (h, w, 3) uint8 RGB (no crop, no resize)."""
    return cv2.cvtColor(_imdecode(data, fmt), cv2.COLOR_BGR2RGB)


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """RGB frame -> JPEG / PNG bytes (what a camera driver's compressed transport publishes)."""
    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt.lower())
    if ext is None:
        raise ImageError(f"compressed format {fmt!r} not supported (jpeg, png)")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageError(f"OpenCV could not encode a {rgb.shape} frame as {fmt}")
    return buf.tobytes()


def encode_raw(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB frame -> an (h, w, c) array in ``encoding`` (a camera driver's raw output)."""
    conv = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
            "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY}
    if encoding not in conv:
        raise ImageError(f"image encoding {encoding!r} not supported ({', '.join(conv)})")
    rgb = np.ascontiguousarray(rgb)
    return rgb if conv[encoding] is None else cv2.cvtColor(rgb, conv[encoding])


def pipeline_for(camera_cfg: Optional[object], image_size: Optional[Sequence[int]] = None,
                 max_age: Optional[float] = None) -> Optional[ImagePipeline]:
    """The pipeline of a config's camera section, else one for ``image_size`` (H, W) with the
    centred crop; None when neither is known."""
    if camera_cfg is not None:
        return ImagePipeline.from_camera(camera_cfg, max_age)
    if image_size is not None:
        H, W = (int(v) for v in image_size)
        return ImagePipeline(W, H, None, 0.1 if max_age is None else float(max_age))
    return None


class TransportedCamera:
    """A simulated camera seen the way a real one is: rendered at the camera's size, sent as
    ``transport`` (a raw encoding, or ``jpeg`` / ``png``), and brought back through ``pipeline`` --
    what the policy node does to a robot's camera topic, without ROS.  Duck-types the simulator
    camera (``cfg.width`` / ``cfg.height`` of the network frame, ``render(sim)``), so an
    in-process evaluation can see through the deployment pipeline (``gps-ros eval --camera``)."""

    def __init__(self, source, pipeline: ImagePipeline, transport: str = "bgr8",
                 quality: int = 90) -> None:
        from types import SimpleNamespace

        if transport not in RAW_ENCODINGS and transport not in ("jpeg", "png"):
            raise ImageError(f"camera transport {transport!r} must be one of "
                             f"{', '.join(RAW_ENCODINGS)}, jpeg, png")
        self.source, self.pipeline = source, pipeline
        self.transport, self.quality = transport, int(quality)
        self.cfg = SimpleNamespace(width=pipeline.width, height=pipeline.height)
        self.bytes_sent = 0

    def render(self, sim) -> np.ndarray:
        rgb = self.source.render(sim)
        if self.transport in RAW_ENCODINGS:
            raw = encode_raw(rgb, self.transport)
            data = raw.tobytes()
            self.bytes_sent += len(data)
            return self.pipeline.from_raw(data, rgb.shape[1], rgb.shape[0], self.transport)
        data = encode_compressed(rgb, self.transport, self.quality)
        self.bytes_sent += len(data)
        return self.pipeline.from_compressed(data, self.transport)
