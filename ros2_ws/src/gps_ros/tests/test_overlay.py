"""Feature-point overlays and evaluation videos (gps_ros.overlay, ``gps-ros eval --video``), and the
``feature_pixels`` method of the TorchScript export."""
import json

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from gps_ros.overlay import (VideoError, caption_height, draw_feature_points,  # noqa: E402
                             point_colors, read_video, to_display, write_video)
from gps_ros.policy.export import export_torchscript, has_feature_pixels, load_torchscript  # noqa: E402
from gps_ros.policy.network import NetworkConfig, VisuomotorPolicy  # noqa: E402


def _bright_pixel_net():
    """A network whose single feature point sits on the brightest pixel (centre taps only, sharp
    softmax): valid, strided convolutions, so the receptive-field mapping matters."""
    cfg = NetworkConfig(image_size=(33, 33), joint_dim=2, action_dim=1, conv_channels=[1, 1],
                        conv_kernels=[3, 3], conv_strides=[2, 1], hidden=[])
    net = VisuomotorPolicy(cfg).eval()
    with torch.no_grad():
        for conv in (net.conv[0], net.conv[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, :, 1, 1] = 1.0
        net.log_temperature.fill_(np.log(0.02))
    return net


def test_draw_feature_points_marks_the_upscaled_pixel():
    frame = np.zeros((16, 16, 3), np.uint8)
    frame[2, 7] = (10, 20, 30)
    out = draw_feature_points(frame, np.array([[3.0, 5.0]]), scale=4, radius=3)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert frame.sum() == 60                                          # the input is untouched
    # nearest-neighbour upscaling: every input pixel is a 4x4 block
    np.testing.assert_array_equal(out[8:12, 28:32], np.broadcast_to([10, 20, 30], (4, 4, 3)))
    # point (u=3, v=5) -> the block rows 20..23, columns 12..15, centred at (13.5, 21.5)
    col = point_colors(1)[0]
    np.testing.assert_array_equal(out[20:24, 12:16], np.broadcast_to(col, (4, 4, 3)))
    hit = np.argwhere(np.all(out == col, axis=-1))
    np.testing.assert_allclose(hit.mean(axis=0), [21.5, 13.5], atol=0.01)
    np.testing.assert_allclose(to_display([[3, 5]], 4), [[13.5, 21.5]])
    # scale 1 keeps the size; non-finite points are skipped
    one = draw_feature_points(frame, np.array([[np.nan, 1.0], [8.0, 8.0]]), scale=1, radius=1)
    assert one.shape == frame.shape and np.all(one[8, 8] == point_colors(2)[1])


def test_point_colours_are_distinct_and_stable_and_captions_add_a_band():
    c = point_colors(32)
    assert len({tuple(x) for x in c}) == 32
    np.testing.assert_array_equal(point_colors(16), c[:16])      # colour i does not depend on n
    frame = np.zeros((32, 32, 3), np.uint8)
    out = draw_feature_points(frame, np.zeros((4, 2)), scale=4, text="target 1/3  step 7/12  d 3.2 cm")
    h = caption_height(128)
    assert out.shape == (128 + h, 128, 3) and h % 2 == 0
    assert out[128:].max() > 200                                   # white text in the band
    with pytest.raises(ValueError, match="RGB uint8"):
        draw_feature_points(frame.astype(np.float32), None)


def test_write_video_reads_back_with_the_frame_count_and_size(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)]
    frames[3][10:20, 10:20] = (255, 0, 0)                          # red in RGB
    path, n = write_video(tmp_path / "v.mp4", iter(frames), fps=20)
    assert n == 6 and path.stat().st_size > 0
    got, fps = read_video(path)
    assert got.shape == (6, 48, 64, 3) and fps == pytest.approx(20)
    assert np.abs(got.astype(int) - np.stack(frames)).mean() < 8    # lossy, but the same frames
    r, g, b = got[3, 15, 15].astype(int)
    assert r > 180 and g < 80 and b < 80                            # RGB order survives
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    cap.release()
    # odd sizes are padded to even ones rather than cropped by the encoder
    _, n = write_video(tmp_path / "odd.mp4", [rng.integers(0, 255, (33, 35, 3), dtype=np.uint8)] * 3, 10)
    assert read_video(tmp_path / "odd.mp4")[0].shape == (3, 34, 36, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4", "v.mp4"]   # no temp files


def test_write_video_errors(tmp_path):
    f = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(VideoError, match="cannot open a 'zzzz' video writer"):
        write_video(tmp_path / "a.mp4", [f], 20, fourcc="zzzz")
    with pytest.raises(VideoError, match="does not exist"):
        write_video(tmp_path / "nowhere" / "a.mp4", [f], 20)
    with pytest.raises(ValueError, match="frame 1"):
        write_video(tmp_path / "b.mp4", [f, np.zeros((8, 8, 3), np.uint8)], 20)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "c.mp4", [], 20)
    assert list(tmp_path.iterdir()) == []                           # nothing half-written left


def test_exported_feature_pixels_match_the_eager_network(tmp_path):
    torch.manual_seed(0)
    cfg = NetworkConfig(image_size=(32, 32), joint_dim=4, action_dim=3, conv_channels=[8, 6],
                        conv_kernels=[5, 3], conv_strides=[2, 1], hidden=[16])
    net = VisuomotorPolicy(cfg).eval()
    module, _ = load_torchscript(export_torchscript(net, tmp_path / "policy.pt"))
    assert has_feature_pixels(module) and has_feature_pixels(net)
    img = torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        got, ref = module.feature_pixels(img), net.feature_pixels(img)
        assert got.shape == (5, 6, 2) and got.dtype == torch.float32
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
        # = the receptive-field mapping of the [-1, 1] spatial-softmax output, as (column, row)
        u, v = net.feature_points_to_pixels(net.feature_points(img))
        torch.testing.assert_close(ref, torch.stack([u, v], -1))
        torch.testing.assert_close(module(img, torch.zeros(5, 4)), net(img, torch.zeros(5, 4)))


def test_exported_feature_pixels_land_on_the_bright_pixel(tmp_path):
    net = _bright_pixel_net()
    module, _ = load_torchscript(export_torchscript(net, tmp_path / "policy.pt"))
    img = np.zeros((1, 33, 33, 3), np.uint8)
    img[0, 11, 23] = 255                                              # row 11, column 23
    with torch.no_grad():
        uv = module.feature_pixels(torch.as_tensor(img))[0].numpy()
    np.testing.assert_allclose(uv, [[23, 11]], atol=0.05)
    out = draw_feature_points(img[0], uv, scale=4, radius=3)
    np.testing.assert_array_equal(out[44:48, 92:96], np.broadcast_to(point_colors(1)[0], (4, 4, 3)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")       # torch.jit.trace / save
def test_exports_without_feature_pixels_still_load(tmp_path):
    """A policy.pt from before the method (forward traced alone) and a blind network's export."""
    net = _bright_pixel_net()
    old = torch.jit.trace(net, (torch.zeros(1, 33, 33, 3, dtype=torch.uint8), torch.zeros(1, 2)),
                          check_trace=False)
    torch.jit.save(old, str(tmp_path / "old.pt"),
                   _extra_files={"config.json": json.dumps(net.cfg.to_dict())})
    module, cfg = load_torchscript(tmp_path / "old.pt")
    assert not has_feature_pixels(module) and cfg["image_size"] == [33, 33]
    blind = VisuomotorPolicy(NetworkConfig(image_size=(32, 32), joint_dim=4, action_dim=3,
                                           use_image=False))
    module, _ = load_torchscript(export_torchscript(blind, tmp_path / "blind.pt"))
    assert not has_feature_pixels(module)


def test_eval_video_of_a_ci_sized_vision_run(tmp_path, capsys):
    """``gps-ros eval --video``: every rollout in one MP4 (T frames each, upscaled, captioned),
    of the frames the policy saw; the default path is DIR/eval_seedS.mp4."""
    from conftest import small_vision_config_dict

    from gps_ros.cli import main
    from gps_ros.config import parse_config
    from gps_ros.evaluate import write_eval_video
    from gps_ros.train import train

    cfg = parse_config(small_vision_config_dict(iterations=5), "test")
    run = train(cfg, tmp_path / "run", iterations=1, progress=False)
    assert main(["eval", "--run", str(run), "--targets", "2", "--seed", "5", "--out",
                 str(tmp_path / "eval.json"), "--video", "--video-scale", "3"]) == 0
    line = capsys.readouterr().out
    video = run / "eval_seed5.mp4"
    assert f"video {video} (24 frames at 20 fps" in line
    frames, fps = read_video(video)
    T = cfg.agent.T
    assert frames.shape == (2 * T, 96 + caption_height(96), 96, 3) and fps == pytest.approx(20)
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["video"] == str(video) and res["video_frames"] == 2 * T
    assert (tmp_path / "eval.png").stat().st_size > 0               # the strip still comes
    # the video shows the frames given to it, at the scale asked for
    imgs = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    imgs[:] = imgs[:, :1, :1]                                       # flat frames: little loss
    from gps_ros.experiment import Experiment

    net = Experiment.open(run).load_state()["policy"].trainer.net
    write_eval_video(net, [(imgs, np.full(3, 0.1))], tmp_path / "one.mp4", fps=10, scale=2)
    got, _ = read_video(tmp_path / "one.mp4")
    assert got.shape == (3, 64 + caption_height(64), 64, 3)
    corner = got[:, 60:64, 0:4].reshape(3, -1, 3).mean(axis=1)      # away from the points
    assert np.abs(corner - imgs[:, 0, 0]).max() < 12
    # a bad --video path fails before the rollouts, in one line
    assert main(["eval", "--run", str(run), "--targets", "1", "--video",
                 str(tmp_path / "no" / "v.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # through a real camera's transport + the pipeline: the same rollouts, near-identical frames
    assert main(["eval", "--run", str(run), "--targets", "2", "--seed", "5", "--out",
                 str(tmp_path / "cam.json"), "--camera", "320x240:jpeg"]) == 0
    assert "through the camera 320x240:jpeg" in capsys.readouterr().out
    cam = json.loads((tmp_path / "cam.json").read_text())
    assert cam["camera"] == "320x240:jpeg" and res["camera"] == "direct"
    np.testing.assert_allclose(cam["final_distance"], res["final_distance"], atol=0.05)
    for bad, msg in (("640x:jpeg", "expected WxH"), ("64x48:h264", "transport 'h264'")):
        assert main(["eval", "--run", str(run), "--targets", "1", "--camera", bad]) == 2
        assert msg in capsys.readouterr().err

