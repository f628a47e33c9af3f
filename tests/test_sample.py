"""--sample: new images from a trained model's checkpoint, without training and without the data."""
import pytest
import torch
from conftest import CHECKPOINT, SCRIPTS, TINY, error_of, grey_pixels, run
from PIL import Image

from models import VAE


def sample(script, out, n, *extra):
    # A --data-dir that does not exist: sampling must not need the data.
    return run(script, "--out-dir", out, "--sample", n, "--data-dir", out / "no-data", "--device", "cpu", *extra)


@pytest.mark.parametrize("script", SCRIPTS)
def test_sample_rebuilds_the_trained_network_from_its_checkpoint_and_writes_generated_png(script, tiny_mnist, tmp_path):
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--z-dim", 3, "--hidden-dim", 32)
    checkpoint = (tmp_path / CHECKPOINT[script]).read_bytes()
    files = sorted(p.name for p in tmp_path.iterdir())

    result = sample(script, tmp_path, 10)  # no --z-dim, --hidden-dim: they come from the checkpoint
    image = Image.open(tmp_path / "generated.png")
    assert image.size == (4 * 30 + 2, 3 * 30 + 2)  # 10 images of 28 pixels, 2 apart, 4 to a row
    assert str(tmp_path / "generated.png") in result.stdout
    assert (tmp_path / CHECKPOINT[script]).read_bytes() == checkpoint  # no training happened
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files + ["generated.png"])

    first = (tmp_path / "generated.png").read_bytes()
    sample(script, tmp_path, 10)
    assert (tmp_path / "generated.png").read_bytes() == first  # the same seed, the same images
    sample(script, tmp_path, 10, "--seed", 1)
    assert (tmp_path / "generated.png").read_bytes() != first


@pytest.mark.parametrize("script", SCRIPTS)
def test_sample_without_a_checkpoint_says_to_train_first(script, tmp_path):
    message = error_of(script, "--out-dir", tmp_path, "--sample", 16, "--data-dir", tmp_path / "no-data")
    assert "--sample" in message and "train first" in message
    assert not (tmp_path / "generated.png").exists()


def test_vae_samples_are_the_decoded_prior_draws(trained, tmp_path):
    (tmp_path / "vae.pt").write_bytes((trained["vae.py"] / "vae.pt").read_bytes())
    sample("vae.py", tmp_path, 4)
    checkpoint = torch.load(tmp_path / "vae.pt", weights_only=True)
    torch.manual_seed(0)  # the seed of the sampling run, which builds the network and then draws z
    vae = VAE((1, 28, 28), checkpoint["config"]["z_dim"], checkpoint["config"]["hidden_dim"])
    vae.load_state_dict(checkpoint["model"])
    with torch.no_grad():
        expected = vae.decode(torch.randn(4, vae.z_dim))
    grid = grey_pixels(Image.open(tmp_path / "generated.png"))
    assert grid.shape == (62, 62)  # 2 x 2 images
    for i in range(2):
        for j in range(2):
            cell = grid[2 + 30 * i:30 + 30 * i, 2 + 30 * j:30 + 30 * j].float() / 255
            assert torch.allclose(cell, expected[2 * i + j, 0], atol=1 / 255)
