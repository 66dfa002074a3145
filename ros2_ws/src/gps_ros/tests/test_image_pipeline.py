"""The camera pipeline (OpenCV): decode, colour order, crop, area resize; shared by sampler and
policy node, and equal to the training camera's view for a wider real-camera frame."""
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from gps_ros.image_pipeline import (ImageError, ImagePipeline, encode_compressed, encode_raw,
                                    pipeline_for)
from gps_ros.ros import convert
from gps_ros.ros.convert import PlainTypes as P, ShapeError


@pytest.fixture(scope="module")
def frame():
    """A 640x480 RGB test picture with structure at every scale (gradients + blocks)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    img = np.stack([(xx * 255 // 639), (yy * 255 // 479), ((xx // 40 + yy // 40) % 2) * 200],
                   axis=-1).astype(np.uint8)
    img[100:140, 300:340] = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    return img


def test_centre_crop_and_explicit_crop_geometry():
    pipe = ImagePipeline(64, 64)
    assert pipe.crop_box(640, 480) == (80, 0, 480, 480)
    assert pipe.crop_box(480, 640) == (0, 80, 480, 480)
    assert ImagePipeline(64, 48).crop_box(640, 480) == (0, 0, 640, 480)
    assert ImagePipeline(64, 64, crop=(10, 20, 300, 300)).crop_box(640, 480) == (10, 20, 300, 300)
    with pytest.raises(ImageError, match="does not fit a 640x480"):
        ImagePipeline(64, 64, crop=(400, 0, 300, 300)).crop_box(640, 480)
    with pytest.raises(ImageError, match="crop must be"):
        ImagePipeline(64, 64, crop=(0, 0, 0, 10))


def test_area_resize_averages_the_covered_pixels(frame):
    out = ImagePipeline(64, 64).from_array(frame, "rgb8")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    roi = frame[:, 80:560].astype(np.float64)                    # 480x480 -> 64x64: 7.5 px per px
    # an output pixel whose footprint is whole source pixels: rows/cols 0..7.5 -> check the
    # block mean of an integer-aligned pair of output pixels (15x15 source pixels -> 2x2 outputs)
    block = roi[:15, :15].mean(axis=(0, 1))
    np.testing.assert_allclose(out[:2, :2].reshape(-1, 3).astype(float).mean(0), block, atol=1.0)
    # and globally: area interpolation preserves the mean intensity
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), roi.reshape(-1, 3).mean(0), atol=0.6)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_every_raw_encoding_gives_the_same_rgb_frame(frame, encoding):
    pipe = ImagePipeline(64, 64)
    ref = pipe.from_array(frame, "rgb8")
    if encoding == "mono8":
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        ref = np.repeat(pipe.from_array(gray, "mono8")[..., :1], 3, axis=2)
    raw = encode_raw(frame, encoding)
    ch = 1 if raw.ndim == 2 else raw.shape[2]
    got = pipe.from_raw(raw.tobytes(), 640, 480, encoding, 640 * ch)
    np.testing.assert_array_equal(got, ref)
    # padded rows (step > width * channels), as some drivers send
    padded = np.zeros((480, 640 * ch + 16), np.uint8)
    padded[:, :640 * ch] = raw.reshape(480, -1)
    np.testing.assert_array_equal(pipe.from_raw(padded.tobytes(), 640, 480, encoding,
                                                640 * ch + 16), ref)


def test_compressed_jpeg_close_png_exact(frame):
    pipe = ImagePipeline(64, 64)
    ref = pipe.from_array(frame, "rgb8").astype(int)
    png = pipe.from_compressed(encode_compressed(frame, "png"), "png")
    np.testing.assert_array_equal(png, ref)
    jpg = pipe.from_compressed(encode_compressed(frame, "jpeg", 90), "jpeg").astype(int)
    assert np.abs(jpg - ref).mean() < 2.0
    with pytest.raises(ImageError, match="could not decode a 5-byte"):
        pipe.from_compressed(b"\xff\xd8bad", "jpeg")


def test_bad_frames_are_refused_with_the_reason(frame):
    pipe = ImagePipeline(64, 64)
    with pytest.raises(ImageError, match="'mono16' not supported"):
        pipe.from_raw(b"\0" * 8, 2, 2, "mono16")
    with pytest.raises(ImageError, match="expected height\\*step"):
        pipe.from_raw(b"\0" * 10, 640, 480, "bgr8")
    with pytest.raises(ImageError, match="not a 'bgra8' image"):
        pipe.from_array(frame, "bgra8")


def test_stale_frames():
    pipe = ImagePipeline(64, 64, max_age=0.1)
    assert not pipe.is_stale(10.0, 10.05)
    assert pipe.is_stale(10.0, 10.15)
    assert pipe.is_stale(None, 10.0)
    assert pipe.is_stale(float("nan"), 10.0)


def test_messages_go_through_the_pipeline(frame):
    """convert.image_from_msg on sensor_msgs/Image and CompressedImage fields."""
    pipe = ImagePipeline(64, 64)
    ref = pipe.from_array(frame, "rgb8")
    for enc in ("bgr8", "rgb8"):
        msg = convert.image_to_msg(frame, P.Image(), encoding=enc)
        assert msg.encoding == enc and msg.step == 3 * 640
        np.testing.assert_array_equal(convert.image_from_msg(msg, pipe), ref)
    comp = convert.compressed_image_to_msg(frame, SimpleNamespace(header=P.Header(), format="",
                                                                  data=None), fmt="png")
    assert comp.format == "png"
    np.testing.assert_array_equal(convert.image_from_msg(comp, pipe), ref)
    np.testing.assert_array_equal(convert.image_from_msg(comp), frame)     # no pipeline: as sent
    with pytest.raises(ShapeError, match="encoding"):
        convert.image_from_msg(SimpleNamespace(encoding="16UC1", width=2, height=2, step=4,
                                               data=b"\0" * 8), pipe)


def test_pipeline_from_config_camera():
    cam = SimpleNamespace(width=64, height=48, crop=[0, 0, 320, 240], max_frame_age=0.2)
    pipe = pipeline_for(cam)
    assert (pipe.width, pipe.height, pipe.crop, pipe.max_age) == (64, 48, (0, 0, 320, 240), 0.2)
    assert pipeline_for(None, (32, 32)).crop_box(640, 480) == (80, 0, 480, 480)
    assert pipeline_for(cam, max_age=0.5).max_age == 0.5
    assert pipeline_for(None) is None


def test_transported_camera_sees_the_training_view():
    """A 640x480 render sent as bgr8 / JPEG / mono8 and brought back through the pipeline is
    the training camera's 64x64 frame, up to anti-aliasing and compression."""
    from gps_ros.agents.sim import build_sim
    from gps_ros.config import load_config
    from gps_ros.image_pipeline import ImagePipeline, TransportedCamera
    from gps_ros.sim.camera import Camera

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / "panda_vision.yaml")
    sim, cam = build_sim(cfg.agent)
    try:
        sim.reset(2)
        direct = cam.render(sim).astype(int)
        big = Camera(cam.cfg, width=640, height=480)
        pipe = ImagePipeline.from_camera(cfg.agent.camera)
        for tr, tol in (("bgr8", 3.0), ("jpeg", 3.5)):
            tc = TransportedCamera(big, pipe, tr)
            assert (tc.cfg.width, tc.cfg.height) == (64, 64)
            got = tc.render(sim).astype(int)
            assert got.shape == direct.shape and np.abs(got - direct).mean() < tol, tr
        assert tc.bytes_sent < 640 * 480 * 3 / 10                       # JPEG: compressed
        mono = TransportedCamera(big, pipe, "mono8").render(sim)
        assert np.array_equal(mono[..., 0], mono[..., 1])               # grey, as sent
    finally:
        sim.close()
