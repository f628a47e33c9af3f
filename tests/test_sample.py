"""--sample: new images from a trained model's checkpoint, without training and without the data."""
import pytest
import torch
from conftest import CHECKPOINT, SCRIPTS, grey_pixels, grid_cells, run
from PIL import Image

from models import VAE, G
from utils import X_SHAPE


@pytest.mark.parametrize("script", SCRIPTS)
def test_sample_draws_from_the_network_in_the_checkpoint_with_its_options_into_generated_png(script, trained,
                                                                                             tmp_path):
    # The checkpoint's network (z of 3, not the default) is given weights far from any that the script's seed builds,
    # so that a sample drawn from a network that was never loaded cannot pass for one that was.
    checkpoint = torch.load(trained[script] / CHECKPOINT[script], weights_only=True)
    config = checkpoint["config"]
    torch.manual_seed(1234)
    far = VAE(X_SHAPE, config["z_dim"], config["hidden_dim"]) if script == "vae.py" else \
        G(config["z_dim"], X_SHAPE, config["hidden_dim"])
    checkpoint["model" if script == "vae.py" else "g_ema"] = far.state_dict()
    torch.save(checkpoint, tmp_path / CHECKPOINT[script])
    saved = (tmp_path / CHECKPOINT[script]).read_bytes()

    sample = ["--out-dir", tmp_path, "--data-dir", tmp_path / "no-data", "--device", "cpu", "--sample", 10]
    result = run(script, *sample)  # no --z-dim and no data: they come from the checkpoint, and are not needed
    torch.manual_seed(0)  # the sampling run's seed: it draws z first
    with torch.no_grad():
        expected = (far.decode if script == "vae.py" else far)(torch.randn(10, config["z_dim"]))
    grid = grey_pixels(Image.open(tmp_path / "generated.png")).float() / 255
    assert grid.shape == (3 * 30 + 2, 4 * 30 + 2)  # 10 images of 28 pixels, 2 apart, 4 to a row
    for cell, image in zip(grid_cells(grid, 10, 4), expected):
        assert torch.allclose(cell, image[0], atol=1 / 255)
    assert str(tmp_path / "generated.png") in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT[script], "generated.png"])
    assert (tmp_path / CHECKPOINT[script]).read_bytes() == saved  # no training happened

    first = (tmp_path / "generated.png").read_bytes()
    run(script, *sample)
    assert (tmp_path / "generated.png").read_bytes() == first  # the same seed, the same images
    run(script, *sample, "--seed", 1)
    assert (tmp_path / "generated.png").read_bytes() != first
