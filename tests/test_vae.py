"""vae.py and the VAE network: the loss, its edge cases, and what a run writes."""
import csv
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import REAL_DATA, needs_real_mnist, run_script
from PIL import Image
from torch.distributions import Normal

from models import VAE
from vae import compute_elbo

X_SHAPE = (1, 28, 28)


def standard_normal(z_dim):
    return Normal(torch.zeros(z_dim), torch.ones(z_dim))


def test_elbo_matches_the_bernoulli_and_gaussian_formulas_by_hand():
    x = torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.0, 0.8]]).view(2, 1, 1, 3)
    x_reconst = torch.tensor([[0.2, 0.9, 0.5], [0.6, 0.1, 0.7]]).view(2, 1, 1, 3)
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    sigma = torch.tensor([[1.0, 0.5], [2.0, 0.1]])

    elbo, log_likelihood, kl = compute_elbo(x, x_reconst, Normal(mu, sigma), standard_normal(2))

    ll = [sum(a * math.log(b) + (1 - a) * math.log(1 - b) for a, b in zip(xs.flatten().tolist(), rs.flatten().tolist()))
          for xs, rs in zip(x, x_reconst)]
    # KL(N(mu, sigma^2) || N(0, 1)) = 1/2 sum (mu^2 + sigma^2 - log sigma^2 - 1): note the 1/2.
    kls = [0.5 * sum(m ** 2 + s ** 2 - math.log(s ** 2) - 1 for m, s in zip(ms.tolist(), ss.tolist()))
           for ms, ss in zip(mu, sigma)]
    assert log_likelihood.item() == pytest.approx(sum(ll) / 2, rel=1e-5)
    assert kl.item() == pytest.approx(sum(kls) / 2, rel=1e-5)
    assert elbo.item() == pytest.approx((sum(ll) - sum(kls)) / 2, rel=1e-5)
    # The reconstruction term is minus the binary cross-entropy, summed over pixels.
    bce = F.binary_cross_entropy(x_reconst, x, reduction="sum") / 2
    assert -log_likelihood.item() == pytest.approx(bce.item(), rel=1e-6)


def test_elbo_uses_its_z_posterior_argument():
    x = torch.full((1, 1, 1, 4), 0.5)
    near, far = Normal(torch.zeros(1, 2), torch.ones(1, 2)), Normal(torch.full((1, 2), 3.0), torch.ones(1, 2))
    elbo_near, _, kl_near = compute_elbo(x, x, near, standard_normal(2))
    elbo_far, _, kl_far = compute_elbo(x, x, far, standard_normal(2))
    assert kl_near.item() == pytest.approx(0.0, abs=1e-6)
    assert kl_far.item() == pytest.approx(9.0)  # 1/2 (3^2 + 3^2)
    assert elbo_near > elbo_far


def test_elbo_and_its_gradient_stay_finite_when_the_decoder_outputs_exactly_0_or_1():
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]]).view(1, 1, 2, 2)
    logits = torch.tensor([[-200.0, 200.0, -200.0, 200.0]], requires_grad=True)
    x_reconst = torch.sigmoid(logits).view(1, 1, 2, 2)
    assert set(x_reconst.flatten().tolist()) == {0.0, 1.0}  # saturated, right and wrong
    z_posterior = Normal(torch.zeros(1, 2), torch.ones(1, 2))
    elbo, _, _ = compute_elbo(x, x_reconst, z_posterior, standard_normal(2))
    elbo.backward()
    assert torch.isfinite(elbo) and torch.isfinite(logits.grad).all()


def test_encoder_scale_stays_positive_where_softplus_underflows():
    vae = VAE(X_SHAPE, z_dim=2)
    with torch.no_grad():
        vae.sigma_net[0].weight.zero_()
        vae.sigma_net[0].bias.fill_(-200.0)  # softplus(-200) is exactly 0 in float32
    assert vae.sigma_net(torch.zeros(1, 500)).eq(0).all()
    x = torch.rand(3, *X_SHAPE)
    z_posterior = vae.encode(x)
    assert (z_posterior.scale > 0).all()
    x_reconst = vae.decode(z_posterior.rsample())
    elbo, _, kl = compute_elbo(x, x_reconst, z_posterior, standard_normal(2))
    elbo.backward()
    assert torch.isfinite(kl) and torch.isfinite(elbo)
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters())


@pytest.mark.parametrize("z_dim", [2, 20])
def test_shapes_follow_the_slides(z_dim):
    vae = VAE(X_SHAPE, z_dim, hidden_dim=500)
    assert [m.out_features for m in vae.encoder if isinstance(m, torch.nn.Linear)] == [500, 500, 500]
    assert [m.out_features for m in vae.decoder if isinstance(m, torch.nn.Linear)] == [500, 500, 784]
    assert isinstance(vae.sigma_net[1], torch.nn.Softplus) and isinstance(vae.decoder[-1], torch.nn.Sigmoid)
    z_posterior = vae.encode(torch.rand(5, *X_SHAPE))
    assert isinstance(z_posterior, Normal) and z_posterior.mean.shape == (5, z_dim)
    x = vae.decode(torch.randn(5, z_dim) * 10)
    assert x.shape == (5, *X_SHAPE) and x.min() >= 0 and x.max() <= 1


def train_tiny(data, out, *extra):
    return run_script("vae.py", "--data-dir", data, "--out-dir", out, "--epochs", 1, "--batch-size", 50,
                      "--device", "cpu", *extra)


def test_one_epoch_writes_every_result_and_a_checkpoint_that_rebuilds_the_model(tiny_mnist, tmp_path):
    out = tmp_path / "vae"  # does not exist yet: the script creates it
    result = train_tiny(tiny_mnist, out)
    for name in ["reconstruction_01.png", "samples_01.png", "reconstruction_progress.png", "loss.png",
                 "latent_space.png", "latent_scatter.png"]:
        Image.open(out / name).verify()  # a complete PNG
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert {"train_neg_elbo", "test_neg_elbo", "test_reconstruction", "test_kl", "seconds",
            "images_per_second"} <= set(rows[0])
    assert float(rows[0]["test_neg_elbo"]) == pytest.approx(
        float(rows[0]["test_reconstruction"]) + float(rows[0]["test_kl"]), rel=1e-4)

    checkpoint = torch.load(out / "vae.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    config = checkpoint["config"]
    assert {"z_dim": 2, "hidden_dim": 500, "batch_size": 50, "lr": 1e-3, "epochs": 1, "seed": 0,
            "device": "cpu"}.items() <= config.items()
    vae = VAE(X_SHAPE, config["z_dim"], config["hidden_dim"])
    vae.load_state_dict(checkpoint["model"])

    assert "epoch  1/1" in result.stdout
    assert f"final test -ELBO {float(rows[0]['test_neg_elbo']):.1f}" in result.stdout
    assert str(out) in result.stdout
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp")]


def test_latent_plots_only_when_z_is_2(tiny_mnist, tmp_path):
    train_tiny(tiny_mnist, tmp_path, "--z-dim", 3)
    assert (tmp_path / "samples_01.png").exists() and (tmp_path / "vae.pt").exists()
    assert not (tmp_path / "latent_space.png").exists() and not (tmp_path / "latent_scatter.png").exists()


def test_the_same_seed_gives_the_same_checkpoint(tiny_mnist, tmp_path):
    train_tiny(tiny_mnist, tmp_path / "a")
    train_tiny(tiny_mnist, tmp_path / "b")
    train_tiny(tiny_mnist, tmp_path / "c", "--seed", 1)
    a, b, c = (torch.load(tmp_path / run / "vae.pt", weights_only=True)["model"] for run in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_help_explains_every_option():
    out = " ".join(run_script("vae.py", "--help").stdout.split())  # argparse wraps lines
    for option in ["--z-dim", "--hidden-dim", "--batch-size", "--lr", "--epochs", "--seed", "--data-dir",
                   "--out-dir", "--device"]:
        assert option in out
    assert "(default: 2)" in out and "(default: outputs/vae)" in out


@needs_real_mnist
def test_one_epoch_on_real_mnist_reaches_175_nats(tmp_path):
    run_script("vae.py", "--data-dir", REAL_DATA, "--out-dir", tmp_path, "--epochs", 1, "--device", "cpu")
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert float(rows[0]["test_neg_elbo"]) < 175
