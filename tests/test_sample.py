"""--sample: new images from a trained model's checkpoint, without training and without the data."""
import pytest
import torch
from conftest import CHECKPOINT, SCRIPTS, TINY, error_of, grey_pixels, grid_cells, run
from PIL import Image

from models import VAE, G


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
def test_sample_before_training_is_a_one_line_error_that_says_to_train_first(script, trained, tmp_path):
    message = error_of(script, "--out-dir", tmp_path, "--sample", 16, "--data-dir", tmp_path / "no-data")
    assert message.startswith(f"error: --sample: there is no {tmp_path / CHECKPOINT[script]}") and "train" in message
    other = "gan.py" if script == "vae.py" else "vae.py"  # the other script's folder has no checkpoint of this one
    assert "--sample: there is no" in error_of(script, "--out-dir", trained[other], "--sample", 16)
    assert not (tmp_path / "generated.png").exists() and not (trained[other] / "generated.png").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_sample_draws_from_the_trained_weights_in_the_checkpoint(script, trained, tmp_path):
    # The checkpoint's network is given weights far from any that the script's seed builds, so that a
    # sample drawn from a network that was never loaded cannot pass for one that was.
    checkpoint = torch.load(trained[script] / CHECKPOINT[script], weights_only=True)
    config = checkpoint["config"]
    torch.manual_seed(1234)
    far = VAE((1, 28, 28), config["z_dim"], config["hidden_dim"]) if script == "vae.py" else \
        G(config["z_dim"], (1, 28, 28), config["hidden_dim"])
    checkpoint["model" if script == "vae.py" else "g_ema"] = far.state_dict()
    torch.save(checkpoint, tmp_path / CHECKPOINT[script])
    sample(script, tmp_path, 4)
    torch.manual_seed(0)  # the sampling run's seed: it draws z first
    with torch.no_grad():
        expected = (far.decode if script == "vae.py" else far)(torch.randn(4, config["z_dim"]))
    grid = grey_pixels(Image.open(tmp_path / "generated.png")).float() / 255
    assert grid.shape == (62, 62)  # 2 x 2 images
    for cell, image in zip(grid_cells(grid, 4, 2), expected):
        assert torch.allclose(cell, image[0], atol=1 / 255)
