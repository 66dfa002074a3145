"""The visuomotor policy: spatial softmax, distillation, linearisation, export."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gps_ros.control import LinearGaussianController  # noqa: E402
from gps_ros.dynamics import PolicyPriorGMM  # noqa: E402
from gps_ros.policy.distill import DistillData, PolicyTrainer  # noqa: E402
from gps_ros.policy.export import export_torchscript, load_torchscript  # noqa: E402
from gps_ros.policy.linearize import linearize_policy  # noqa: E402
from gps_ros.policy.network import NetworkConfig, VisuomotorPolicy, spatial_softmax  # noqa: E402


@pytest.mark.parametrize("r, c", [(0, 0), (10, 50), (63, 17), (31, 32)])
def test_spatial_softmax_finds_a_single_bright_pixel(r, c):
    H = W = 64
    f = torch.zeros(2, 3, H, W)
    f[:, 1, r, c] = 50.0                      # one bright pixel in channel 1
    pts = spatial_softmax(f)
    x = -1 + 2 * c / (W - 1)
    y = -1 + 2 * r / (H - 1)
    assert pts.shape == (2, 3, 2)
    np.testing.assert_allclose(pts[0, 1].numpy(), [x, y], atol=1e-4)
    np.testing.assert_allclose(pts[0, 0].numpy(), [0.0, 0.0], atol=1e-6)   # flat -> centre


def test_a_peaked_spatial_softmax_leaves_no_denormals():
    """Importing the network flushes float32 denormals to zero: a sharp softmax over 4096 pixels
    would otherwise be full of them, and on x86 every op on one takes a slow microcode path (a
    vision S-step ran ~5x slower on real frames)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        pytest.skip(f"flush-to-zero is not available on {platform.machine()}")
    f = torch.zeros(1, 1, 64, 64)
    f[0, 0, 5, 5] = 95.0                          # exp(-95) ~ 5e-42: a denormal float32
    attn = torch.softmax(f.reshape(1, -1), dim=-1)[0]
    assert int((attn > 0).sum()) == 1 and attn[5 * 64 + 5] == 1.0
    assert float(torch.tensor([1e-39]) * 1.0) == 0.0


def test_an_s_step_flushes_denormals_on_its_own_thread():
    """The flag is per thread: an S-step on an executor thread that predates the import (or had it
    cleared) sets it again for itself."""
    import threading

    net_cfg = NetworkConfig(image_size=(16, 16), joint_dim=2, action_dim=1, conv_channels=[2],
                            conv_kernels=[3], conv_strides=[1], hidden=[4], use_image=True)
    rng = np.random.default_rng(0)
    n = 8
    data = DistillData(rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8), rng.normal(size=(n, 2)),
                       rng.normal(size=(n, 1)), np.ones((n, 1, 1)))
    seen = {}

    def worker():
        torch.set_flush_denormal(False)
        seen["before"] = float(torch.tensor([1e-39]) * 1.0)
        PolicyTrainer(net_cfg, batch_size=4, iterations=1).train(data)
        seen["after"] = float(torch.tensor([1e-39]) * 1.0)

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    if seen["before"] == 0.0:
        pytest.skip("this platform flushes denormals regardless")
    assert seen["after"] == 0.0


def test_feature_points_map_back_to_the_bright_pixel():
    """A 1x1-kernel identity-like network: the feature point of a bright pixel maps back onto
    that pixel through the receptive-field arithmetic of valid, strided convolutions."""
    cfg = NetworkConfig(image_size=(33, 33), joint_dim=2, action_dim=1, conv_channels=[1, 1],
                        conv_kernels=[3, 3], conv_strides=[2, 1], hidden=[])
    net = VisuomotorPolicy(cfg)
    with torch.no_grad():
        for conv in (net.conv[0], net.conv[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[0, :, 1, 1] = 1.0                 # the centre tap only
        net.log_temperature.fill_(np.log(0.02))            # sharp softmax
    img = np.zeros((1, 33, 33, 3), np.uint8)
    img[0, 11, 23] = 255                                  # row 11, column 23 (odd: on the grid)
    pts = net.feature_points(torch.as_tensor(img))[0].detach().numpy()
    col, row = net.feature_points_to_pixels(pts)
    np.testing.assert_allclose([col[0], row[0]], [23, 11], atol=0.05)


def _synthetic(n, rng, H=32, W=32):
    """Images with a bright square whose position sets the target action (plus joint state)."""
    pos = rng.uniform(0.15, 0.85, size=(n, 2))
    imgs = np.zeros((n, H, W, 3), np.uint8)
    for i, (a, b) in enumerate(pos):
        r, c = int(a * H), int(b * W)
        imgs[i, r - 2:r + 2, c - 2:c + 2] = 255
    q = rng.standard_normal((n, 4))
    A = np.array([[1.0, -0.5], [0.3, 2.0], [-1.0, 0.2]])
    u = pos @ A.T * 3 + 0.2 * q[:, :3]
    prec = np.broadcast_to(np.diag([4.0, 1.0, 0.25]), (n, 3, 3)).copy()
    return DistillData(imgs, q, u, prec)


def test_distillation_lowers_the_precision_weighted_loss():
    rng = np.random.default_rng(0)
    data = _synthetic(512, rng)
    cfg = NetworkConfig(image_size=(32, 32), joint_dim=4, action_dim=3, conv_channels=[16, 8],
                        conv_kernels=[5, 3], conv_strides=[2, 1], hidden=[32, 32])
    tr = PolicyTrainer(cfg, lr=3e-3, batch_size=64, iterations=400, seed=0, shift=0)
    tr._set_normalisation(data)
    before = tr.evaluate_loss(data)
    out = tr.train(data)
    after = tr.evaluate_loss(data)
    assert after < 0.3 * before, (before, after, out)
    # the policy covariance is the inverse mean precision
    np.testing.assert_allclose(tr.pol_covar, np.diag([0.25, 1.0, 4.0]), rtol=1e-9)


def test_auxiliary_head_learns_the_object_position_jointly():
    """With aux_weight the feature points are also trained to give the square's position."""
    rng = np.random.default_rng(3)
    data = _synthetic(512, rng)
    pos = np.array([np.argwhere(im[..., 0] > 0).mean(0) / 32 for im in data.images])
    data.aux = pos
    test = _synthetic(128, np.random.default_rng(4))
    test_pos = np.array([np.argwhere(im[..., 0] > 0).mean(0) / 32 for im in test.images])
    cfg = NetworkConfig(image_size=(32, 32), joint_dim=4, action_dim=3, conv_channels=[16, 8],
                        conv_kernels=[5, 3], conv_strides=[2, 1], hidden=[32, 32], aux_dim=2)
    tr = PolicyTrainer(cfg, lr=3e-3, batch_size=64, iterations=400, seed=0, shift=0,
                       aux_weight=1.0, aux_scale=0.1)
    before = np.abs(tr.predict_object(test.images) - test_pos).mean()
    tr.train(data)
    after = np.abs(tr.predict_object(test.images) - test_pos).mean()
    assert after < 0.2 * before and after < 0.1, (before, after)   # ~2-3 px on held-out images


def test_linearisation_recovers_a_linear_gaussian_policy():
    rng = np.random.default_rng(1)
    N, T, dX, dU = 12, 6, 5, 2
    K = rng.standard_normal((T, dU, dX))
    k = rng.standard_normal((T, dU))
    X = rng.standard_normal((N, T, dX))
    U = np.einsum("tux,ntx->ntu", K, X) + k
    cov = np.array([[0.5, 0.1], [0.1, 0.3]])
    lin = linearize_policy(X, U, cov)
    assert isinstance(lin, LinearGaussianController)
    np.testing.assert_allclose(lin.K, K, atol=1e-4)
    np.testing.assert_allclose(lin.k, k, atol=1e-4)
    np.testing.assert_allclose(lin.pol_covar, np.broadcast_to(cov, (T, dU, dU)), atol=1e-4)


def test_linearisation_with_policy_prior_beats_plain_fit_when_data_is_scarce():
    rng = np.random.default_rng(2)
    T, dX, dU = 8, 8, 2
    Kt = rng.standard_normal((dU, dX))          # one linear policy for all t
    def draw(N):
        X = rng.standard_normal((N, T, dX))
        return X, X @ Kt.T + 0.01 * rng.standard_normal((N, T, dU))
    prior = PolicyPriorGMM(max_clusters=2, min_samples_per_cluster=20, max_samples=40)
    prior.update(*draw(30))
    X, U = draw(3)                              # N = 3 < dX: plain regression is underdetermined
    err_plain = np.abs(linearize_policy(X, U, np.eye(dU)).K - Kt).mean()
    err_prior = np.abs(linearize_policy(X, U, np.eye(dU), prior=prior).K - Kt).mean()
    assert err_prior < 0.5 * err_plain, (err_prior, err_plain)


def test_torchscript_export_reproduces_the_network(tmp_path):
    torch.manual_seed(0)
    cfg = NetworkConfig(image_size=(32, 32), joint_dim=4, action_dim=3, conv_channels=[8, 8],
                        conv_kernels=[5, 3], conv_strides=[2, 1], hidden=[16])
    net = VisuomotorPolicy(cfg).eval()
    net.u_std.fill_(2.0)
    net.q_mean.fill_(0.5)
    path = export_torchscript(net, tmp_path / "policy.pt")
    module, meta = load_torchscript(path)
    assert meta["action_dim"] == 3 and meta["image_size"] == [32, 32]
    img = torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8)
    q = torch.randn(5, 4)
    with torch.no_grad():
        np.testing.assert_allclose(module(img, q).numpy(), net(img, q).numpy(), atol=1e-6)


def test_blind_network_ignores_images():
    cfg = NetworkConfig(image_size=(32, 32), joint_dim=4, action_dim=3, use_image=False)
    net = VisuomotorPolicy(cfg).eval()
    q = torch.randn(2, 4)
    a = net(torch.zeros(2, 32, 32, 3, dtype=torch.uint8), q)
    b = net(torch.full((2, 32, 32, 3), 255, dtype=torch.uint8), q)
    assert torch.equal(a, b)
