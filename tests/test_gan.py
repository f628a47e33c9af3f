"""gan.py and the GAN's networks: shapes, one training step, what a run writes, and sample quality."""
import csv

import torch
import torch.nn.functional as F
import pytest
from conftest import REAL_DATA, TINY, grey_pixels, help_of, needs_real_mnist, run
from PIL import Image
from torch import nn

import utils
from models import D, G

X_SHAPE = (1, 28, 28)


def test_g_makes_images_in_0_1_and_d_one_probability_per_image():
    g, d = G(10, X_SHAPE), D(X_SHAPE)
    assert [m.out_features for m in g.net if isinstance(m, nn.Linear)] == [500, 500, 784]
    assert [m.out_features for m in d.net if isinstance(m, nn.Linear)] == [500, 500, 1]
    x = g(torch.randn(7, 10) * 10)
    assert x.shape == (7, *X_SHAPE) and x.min() >= 0 and x.max() <= 1
    p = d(x)
    assert p.shape == (7,) and p.min() >= 0 and p.max() <= 1


def test_one_training_step_changes_both_networks(tiny_mnist, tmp_path):
    run("gan.py", "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--batch-size", 300)  # one D and one G step
    checkpoint = torch.load(tmp_path / "gan.pt", weights_only=True)
    config = checkpoint["config"]
    torch.manual_seed(0)  # the script's seed: the same initial networks
    g0, d0 = G(10, X_SHAPE, config["hidden_dim"]), D(X_SHAPE, config["d_hidden_dim"])
    g1, d1 = G(10, X_SHAPE, config["hidden_dim"]), D(X_SHAPE, config["d_hidden_dim"])
    g1.load_state_dict(checkpoint["g"])
    d1.load_state_dict(checkpoint["d"])
    for before, after in [(g0, g1), (d0, d1)]:
        for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
            assert not torch.equal(p0, p1), name


def train_tiny(data, out, *extra):
    return run("gan.py", "--data-dir", data, "--out-dir", out, *TINY, *extra)


def test_one_epoch_writes_every_result_and_a_checkpoint_that_rebuilds_g(tiny_mnist, tmp_path):
    out = tmp_path / "gan"
    result = train_tiny(tiny_mnist, out)
    for name in ["samples_00.png", "samples_01.png", "progress.png", "progress.gif", "loss.png"]:
        Image.open(out / name).verify()
    assert Image.open(out / "samples_01.png").size == (242, 242)  # 8 x 8 digits of 28 pixels, 2 apart
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    assert {"d_loss_real", "d_loss_fake", "g_loss", "d_real", "d_fake", "seconds", "images_per_second"} <= set(rows[0])

    checkpoint = torch.load(out / "gan.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    config = checkpoint["config"]
    assert {"z_dim": 10, "hidden_dim": 500, "d_hidden_dim": 64, "batch_size": 50, "epochs": 1, "lr": 1e-3,
            "seed": 0}.items() <= config.items()
    D(X_SHAPE, config["d_hidden_dim"]).load_state_dict(checkpoint["d"])
    g = G(config["z_dim"], X_SHAPE, config["hidden_dim"])
    g.load_state_dict(checkpoint["g"])
    assert "epoch  1/1" in result.stdout and str(out) in result.stdout


def test_the_same_seed_gives_the_same_checkpoint(tiny_mnist, tmp_path):
    train_tiny(tiny_mnist, tmp_path / "a")
    train_tiny(tiny_mnist, tmp_path / "b")
    a, b = (torch.load(tmp_path / run / "gan.pt", weights_only=True) for run in "ab")
    for net in ["g", "d"]:
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])


def test_help_explains_every_option():
    out = help_of("gan.py")
    for option in ["--z-dim", "--hidden-dim", "--d-hidden-dim", "--batch-size", "--lr", "--epochs", "--seed",
                   "--dataset", "--data-dir", "--out-dir", "--device", "--resume", "--sample"]:
        assert option in out
    assert "(default: 10)" in out and "(default: outputs/gan)" in out


def test_progress_gif_shows_each_epoch_with_its_number_above(tiny_mnist, tmp_path):
    train_tiny(tiny_mnist, tmp_path, "--epochs", 2)
    gif = Image.open(tmp_path / "progress.gif")
    assert gif.n_frames == 3  # before training, after epoch 1, after epoch 2
    captions = []
    for epoch in range(3):
        gif.seek(epoch)
        frame = grey_pixels(gif)
        samples = grey_pixels(Image.open(tmp_path / f"samples_{epoch:02d}.png"))
        assert frame.shape == (samples.shape[0] + 24, samples.shape[1])  # a 24-pixel caption above
        assert torch.equal(frame[24:], samples)  # the epoch's samples, unchanged
        captions.append(frame[:24])
        assert (captions[-1] < 128).sum() > 50  # dark text on the white band
    assert not torch.equal(captions[1], captions[2]) and not torch.equal(captions[0], captions[1])


def test_fashion_mnist_trains_and_is_recorded_in_the_checkpoint(tiny_mnist, tmp_path):
    train_tiny(tiny_mnist, tmp_path, "--dataset", "fashion-mnist")
    assert torch.load(tmp_path / "gan.pt", weights_only=True)["config"]["dataset"] == "fashion-mnist"


def train_digit_classifier():
    """A small convolutional network, trained for 2 epochs: over 98% on MNIST's test set."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    (images, labels), _, _ = utils.load_dataset("mnist", REAL_DATA)
    loader = utils.BatchLoader(images, labels, 128, torch.device("cpu"))
    for _ in range(2):
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


@pytest.mark.slow
@needs_real_mnist
def test_the_default_gan_draws_every_digit_in_fair_shares(tmp_path):
    classifier = train_digit_classifier()
    _, (images, labels), _ = utils.load_dataset("mnist", REAL_DATA)
    with torch.no_grad():
        accuracy = (classifier(images.unsqueeze(1).float() / 255).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.98

    run("gan.py", "--data-dir", REAL_DATA, "--out-dir", tmp_path, "--device", "cpu")
    checkpoint = torch.load(tmp_path / "gan.pt", weights_only=True)
    g = G(checkpoint["config"]["z_dim"], X_SHAPE, checkpoint["config"]["hidden_dim"])
    g.load_state_dict(checkpoint["g"])
    with torch.no_grad():
        digits = classifier(g(torch.randn(10_000, g.z_dim))).argmax(1)
    shares = torch.bincount(digits, minlength=10) / len(digits)
    assert shares.min() >= 0.05 and shares.max() <= 0.20, f"digit shares {shares.tolist()}"
