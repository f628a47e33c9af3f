"""--sample: new images from a trained model's checkpoint, without training and without the data."""
import lzma

import pytest
import torch
from conftest import CHECKPOINT, ROOT, SCRIPTS, TINY, error_of, grey_pixels, grid_cells, run
from PIL import Image

from models import VAE, G

OLD_CHECKPOINTS = ROOT / "tests" / "old_checkpoints"


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


@pytest.mark.parametrize("script", SCRIPTS)
def test_sample_draws_from_the_trained_weights_in_the_checkpoint(script, trained, tmp_path):
    # The checkpoint's network is given weights far from any that the script's seed builds, so that a
    # sample drawn from a network that was never loaded cannot pass for one that was.
    checkpoint = torch.load(trained[script] / CHECKPOINT[script], weights_only=True)
    config = checkpoint["config"]
    def build():
        if script == "vae.py":
            return VAE((1, 28, 28), config["z_dim"], config["hidden_dim"])
        return G(config["z_dim"], (1, 28, 28), config["hidden_dim"])

    torch.manual_seed(1234)
    far = build()
    checkpoint["model" if script == "vae.py" else "g"] = far.state_dict()
    torch.save(checkpoint, tmp_path / CHECKPOINT[script])
    sample(script, tmp_path, 4)
    torch.manual_seed(0)  # the sampling run's seed: it builds the network, then draws z
    build()
    with torch.no_grad():
        expected = (far.decode if script == "vae.py" else far)(torch.randn(4, config["z_dim"]))
    grid = grey_pixels(Image.open(tmp_path / "generated.png")).float() / 255
    assert grid.shape == (62, 62)  # 2 x 2 images
    for cell, image in zip(grid_cells(grid, 4, 2), expected):
        assert torch.allclose(cell, image[0], atol=1 / 255)


@pytest.mark.parametrize("name,script,extra", [("vae", "vae.py", []), ("cvae", "vae.py", ["--label", 7]),
                                               ("gan", "gan.py", [])])
def test_sample_reads_a_checkpoint_of_the_previous_format_and_draws_the_same_images(name, script, extra, tmp_path):
    (tmp_path / CHECKPOINT[script]).write_bytes(lzma.decompress((OLD_CHECKPOINTS / f"{name}.pt.xz").read_bytes()))
    assert "version" not in torch.load(tmp_path / CHECKPOINT[script], weights_only=True)  # the previous format
    sample(script, tmp_path, 6 if name != "cvae" else 4, *extra)
    old = grey_pixels(Image.open(OLD_CHECKPOINTS / f"{name}-generated.png")).float()
    new = grey_pixels(Image.open(tmp_path / "generated.png")).float()
    # Equal up to one grey level: another CPU can round the last bit of a pixel the other way.
    assert old.shape == new.shape and (old - new).abs().max() <= 1
