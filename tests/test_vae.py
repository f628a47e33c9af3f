"""vae.py and the VAE network: the loss, its edge cases, and what a run writes."""
import csv
import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, error_of, grey_pixels, help_of, parser_of, run
from PIL import Image
from torch.distributions import Normal

import utils
from models import VAE
from vae import compute_elbo, estimate_neg_log_likelihood, evaluate, plot_interpolation, plot_latent_scatter, plot_loss

X_SHAPE = (1, 28, 28)


def standard_normal(z_dim):
    return Normal(torch.zeros(z_dim), torch.ones(z_dim))


def test_elbo_matches_the_bernoulli_and_gaussian_formulas_by_hand():
    x = torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.0, 0.8]]).view(2, 1, 1, 3)
    x_reconst = torch.tensor([[0.2, 0.9, 0.5], [0.6, 0.1, 0.7]]).view(2, 1, 1, 3)
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    sigma = torch.tensor([[1.0, 0.5], [2.0, 0.1]])

    elbo = compute_elbo(x, x_reconst, Normal(mu, sigma), standard_normal(2))

    ll = [sum(a * math.log(b) + (1 - a) * math.log(1 - b) for a, b in zip(xs.flatten().tolist(), rs.flatten().tolist()))
          for xs, rs in zip(x, x_reconst)]
    # KL(N(mu, sigma^2) || N(0, 1)) = 1/2 sum (mu^2 + sigma^2 - log sigma^2 - 1): note the 1/2.
    kls = [0.5 * sum(m ** 2 + s ** 2 - math.log(s ** 2) - 1 for m, s in zip(ms.tolist(), ss.tolist()))
           for ms, ss in zip(mu, sigma)]
    assert elbo.item() == pytest.approx((sum(ll) - sum(kls)) / 2, rel=1e-5)
    # The reconstruction term is minus the binary cross-entropy, summed over pixels.
    assert utils.log_bernoulli(x, x_reconst).sum().item() == pytest.approx(sum(ll), rel=1e-6)
    assert F.binary_cross_entropy(x_reconst, x, reduction="sum").item() == pytest.approx(-sum(ll), rel=1e-6)


def test_elbo_uses_its_z_posterior_argument():
    x = torch.full((1, 1, 1, 4), 0.5)
    near, far = Normal(torch.zeros(1, 2), torch.ones(1, 2)), Normal(torch.full((1, 2), 3.0), torch.ones(1, 2))
    assert compute_elbo(x, x, near, standard_normal(2)).item() == pytest.approx(4 * math.log(0.5))  # no KL
    # KL(N(3, 1) || N(0, 1)) in each of the 2 dimensions is 1/2 3^2.
    assert compute_elbo(x, x, near, standard_normal(2)) - compute_elbo(x, x, far, standard_normal(2)) == \
        pytest.approx(9.0)


def test_elbo_and_its_gradient_stay_finite_when_the_decoder_outputs_exactly_0_or_1():
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]]).view(1, 1, 2, 2)
    logits = torch.tensor([[-200.0, 200.0, -200.0, 200.0]], requires_grad=True)
    x_reconst = torch.sigmoid(logits).view(1, 1, 2, 2)
    assert set(x_reconst.flatten().tolist()) == {0.0, 1.0}  # saturated, right and wrong
    z_posterior = Normal(torch.zeros(1, 2), torch.ones(1, 2))
    elbo = compute_elbo(x, x_reconst, z_posterior, standard_normal(2))
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
    kl = torch.distributions.kl_divergence(z_posterior, standard_normal(2))
    elbo = compute_elbo(x, x_reconst, z_posterior, standard_normal(2))
    elbo.backward()
    assert torch.isfinite(kl).all() and torch.isfinite(elbo)
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


@torch.no_grad()
def exact_neg_log_likelihood(vae, images, z_prior):
    """-log p(x) = -log of the integral of p(x|z) p(z) over z, for z of size 1: a sum over a fine grid."""
    x = images.flatten(1).float() / 255
    z = torch.linspace(-10, 10, 8001).unsqueeze(1)
    p = vae.decode(z).flatten(1)
    tiny = torch.finfo(p.dtype).tiny
    log_likelihood = x @ p.clamp(min=tiny).log().T + (1 - x) @ (1 - p).clamp(min=tiny).log().T  # (images, grid)
    log_joint = log_likelihood + z_prior.log_prob(z).squeeze(1)
    return -(torch.logsumexp(log_joint, 1) + math.log(20 / 8000)).mean().item()


def test_importance_weighted_estimate_starts_at_the_elbo_and_closes_in_on_the_exact_likelihood():
    torch.manual_seed(0)
    vae = VAE(X_SHAPE, z_dim=1, hidden_dim=64)
    with torch.no_grad():
        vae.decoder[0].weight.mul_(8)  # images that change with z, so that q(z|x) misses p(z|x) by a lot
    images = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8)
    loader = utils.BatchLoader(images, torch.zeros(300, dtype=torch.long), 300, torch.device("cpu"), shuffle=False)
    z_prior = standard_normal(1)

    exact = exact_neg_log_likelihood(vae, images, z_prior)
    neg_elbo = evaluate(vae, loader, z_prior)["test_neg_elbo"]
    iw = {k: estimate_neg_log_likelihood(vae, loader, z_prior, k) for k in [1, 10, 100, 1000]}
    gap = neg_elbo - exact
    assert gap > 5  # the ELBO is a loose bound here, so the estimate has a long way to go
    assert abs(iw[1] - neg_elbo) < 0.15 * gap  # with K = 1 the estimate is the ELBO
    assert neg_elbo > iw[10] > iw[100] > iw[1000] > exact - 0.05
    assert iw[1000] - exact < 0.1


def train_tiny(data, out, *extra):
    return run("vae.py", "--data-dir", data, "--out-dir", out, *TINY, *extra)


def test_one_epoch_writes_every_result_and_a_checkpoint_that_rebuilds_the_model(tiny_mnist, tmp_path):
    out = tmp_path / "vae"  # does not exist yet: the script creates it
    result = train_tiny(tiny_mnist, out, "--z-dim", 2)
    for name in ["reconstruction_01.png", "samples_01.png", "reconstruction_progress.png", "loss.png",
                 "interpolation.png", "latent_space.png", "latent_scatter.png"]:
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
            "device": "cpu", "dataset": "mnist"}.items() <= config.items()
    vae = VAE(X_SHAPE, config["z_dim"], config["hidden_dim"])
    vae.load_state_dict(checkpoint["model"])

    assert "epoch  1/1" in result.stdout
    assert f"final test -ELBO {float(rows[0]['test_neg_elbo']):.1f} nats per image" in result.stdout
    assert "final test -log p(x) <= " in result.stdout and "K = 10 samples" in result.stdout
    assert str(out) in result.stdout
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp")]


def test_latent_plots_only_when_z_is_2_and_the_interpolation_for_any_z(tiny_mnist, tmp_path):
    train_tiny(tiny_mnist, tmp_path, "--z-dim", 3)
    assert (tmp_path / "samples_01.png").exists() and (tmp_path / "vae.pt").exists()
    Image.open(tmp_path / "interpolation.png").verify()
    assert not (tmp_path / "latent_space.png").exists() and not (tmp_path / "latent_scatter.png").exists()


def test_the_same_seed_gives_the_same_checkpoint(tiny_mnist, trained, tmp_path):
    train_tiny(tiny_mnist, tmp_path / "b")
    train_tiny(tiny_mnist, tmp_path / "c", "--seed", 1)
    a, b, c = (torch.load(out / "vae.pt", weights_only=True)["model"]
               for out in [trained["vae.py"], tmp_path / "b", tmp_path / "c"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_help_explains_every_option(monkeypatch):
    out = help_of("vae.py")
    options = [action for action in parser_of("vae.py", monkeypatch)._actions if action.dest != "help"]
    assert len(options) == 15
    for action in options:
        assert len(action.help.split()) >= 3, action.option_strings  # a phrase, not a word
        assert " ".join(action.help.replace("%%", "%").split()) in out, action.option_strings
    assert "(default: 2)" in out and "(default: outputs/vae)" in out


def test_iw_samples_0_skips_the_estimate_and_negative_is_an_error(tiny_mnist, tmp_path):
    result = train_tiny(tiny_mnist, tmp_path, "--iw-samples", 0)
    assert "final test -ELBO" in result.stdout and "log p(x)" not in result.stdout
    assert "--iw-samples" in error_of("vae.py", "--iw-samples", "-1", status=2)


def cell(figure, row, column):
    """The image in a row and column of a plot_image_table figure, as a (28, 28) tensor."""
    grid = torch.as_tensor(figure.axes[0].images[0].get_array())
    return grid[2 + 30 * row:30 + 30 * row, 2 + 30 * column:30 + 30 * column]


@torch.no_grad()
def test_interpolation_decodes_the_straight_line_between_the_posterior_means():
    torch.manual_seed(0)
    vae = VAE(X_SHAPE, z_dim=5, hidden_dim=32)
    x_from, x_to = torch.rand(3, *X_SHAPE), torch.rand(3, *X_SHAPE)
    figure = plot_interpolation(vae, x_from, x_to, ["0", "1", "2"], ["1", "2", "0"], steps=5)
    z_from, z_to = vae.encode(x_from).mean, vae.encode(x_to).mean
    for row in range(3):
        assert torch.equal(cell(figure, row, 0), x_from[row, 0])
        for column, t in enumerate([0, 0.25, 0.5, 0.75, 1], start=1):
            expected = vae.decode(((1 - t) * z_from[row] + t * z_to[row]).unsqueeze(0))[0, 0]
            assert torch.allclose(cell(figure, row, column), expected, atol=1e-6), (row, t)
        assert torch.equal(cell(figure, row, 6), x_to[row, 0])
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["0 → 1", "1 → 2", "2 → 0"]


def test_the_latent_scatter_names_the_classes(tiny_mnist):
    _, (images, labels), classes = utils.load_dataset("fashion-mnist", tiny_mnist)
    loader = utils.BatchLoader(images, labels, 50, torch.device("cpu"), shuffle=False)
    figure = plot_latent_scatter(VAE(X_SHAPE, z_dim=2), loader, classes)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == classes
    assert classes[0] == "T-shirt/top"


def test_fashion_mnist_is_the_data_trained_on_and_is_recorded_in_the_checkpoint(tiny_mnist, tmp_path):
    train_tiny(tiny_mnist, tmp_path, "--dataset", "fashion-mnist")
    checkpoint = torch.load(tmp_path / "vae.pt", weights_only=True)
    assert checkpoint["config"]["dataset"] == "fashion-mnist"
    # The tiny Fashion-MNIST has 200 training images (MNIST 300): 4 batches of 50 make the epoch.
    assert [len(losses) for losses in checkpoint["records"]["batch_losses"]] == [4]
    # The originals in reconstruction_01.png are Fashion-MNIST's first test images.
    _, (test_images, _), _ = utils.load_dataset("fashion-mnist", tiny_mnist)
    grid = grey_pixels(Image.open(tmp_path / "reconstruction_01.png"))
    for i in range(8):
        assert torch.equal(grid[2:30, 2 + 30 * i:30 + 30 * i], test_images[i]), i


def test_loss_png_places_each_epochs_batches_within_that_epoch_when_their_number_changes():
    # Two epochs of 4 batches, then one of 10 (--resume with a smaller --batch-size).
    batch_losses = [torch.full((4,), 200.0), torch.full((4,), 160.0), torch.full((10,), 150.0)]
    metrics = [{"epoch": e, "train_neg_elbo": loss, "test_neg_elbo": loss}
               for e, loss in [(1, 200), (2, 160), (3, 150)]]
    figure = plot_loss(batch_losses, metrics)
    steps, losses = figure.axes[0].lines[0].get_data()
    assert steps.tolist() == pytest.approx([0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2] + [2.1 + i / 10 for i in range(10)])
    assert losses.tolist() == [200.0] * 4 + [160.0] * 4 + [150.0] * 10


def final_numbers(stdout):
    """The final test -ELBO and importance-weighted -log p(x) that vae.py prints."""
    neg_elbo = float(re.search(r"final test -ELBO ([0-9.]+)", stdout).group(1))
    neg_log_likelihood = float(re.search(r"final test -log p\(x\) <= ([0-9.]+)", stdout).group(1))
    return neg_elbo, neg_log_likelihood


@pytest.mark.slow
def test_one_epoch_on_real_mnist_reaches_175_nats_and_the_iw_bound_is_tighter(real_mnist, tmp_path):
    result = run("vae.py", "--data-dir", real_mnist, "--out-dir", tmp_path, "--epochs", 1, "--device", "cpu")
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert float(rows[0]["test_neg_elbo"]) < 175
    neg_elbo, neg_log_likelihood = final_numbers(result.stdout)
    assert neg_elbo - 5 < neg_log_likelihood < neg_elbo - 0.3


@pytest.mark.slow
def test_one_epoch_on_real_fashion_mnist_beats_the_mean_image_by_far(real_fashion_mnist, tmp_path):
    run("vae.py", "--dataset", "fashion-mnist", "--data-dir", real_fashion_mnist, "--out-dir", tmp_path,
        "--epochs", 1, "--iw-samples", 0, "--device", "cpu")
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    # A model that ignores z and draws every pixel from its mean over the training set scores 385 nats;
    # one epoch reaches 273. One epoch on MNIST's digits scores 167: below 240, the data were not clothes.
    assert 240 < float(rows[0]["test_neg_elbo"]) < 290
