"""--sample: new images from a trained model's checkpoint, without training and without the data."""
import digits
import pytest
import torch
from conftest import CHECKPOINT, SCRIPTS, grey_pixels, grid_cells, run
from PIL import Image

from models import VAE, G
from utils import X_SHAPE


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("kind,n,label,columns", [("plain", 10, None, 4), ("conditional", 12, None, 10),
                                                  ("conditional", 4, 7, 2)])
def test_sample_draws_n_images_of_the_label_or_else_of_the_classes_a_column_each_from_the_checkpoint(
        script, kind, n, label, columns, trained, conditional, tmp_path):
    # The checkpoint's network (z of 3, not the default) is given weights far from any that the script's seed builds,
    # so that a sample drawn from a network that was never loaded cannot pass for one that was.
    checkpoint = torch.load({"plain": trained, "conditional": conditional}[kind][script] / CHECKPOINT[script],
                            weights_only=True)
    config, n_classes = checkpoint["config"], 10 if kind == "conditional" else 0
    torch.manual_seed(1234)
    far = VAE(X_SHAPE, config["z_dim"], config["hidden_dim"], n_classes) if script == "vae.py" else \
        G(config["z_dim"], X_SHAPE, config["hidden_dim"], n_classes)
    checkpoint["model" if script == "vae.py" else "g_ema"] = far.state_dict()
    torch.save(checkpoint, tmp_path / CHECKPOINT[script])
    saved = (tmp_path / CHECKPOINT[script]).read_bytes()

    sample = ["--out-dir", tmp_path, "--data-dir", tmp_path / "no-data", "--device", "cpu", "--sample", n,
              *(["--label", label] if label is not None else [])]
    result = run(script, *sample)  # no --z-dim and no data: they come from the checkpoint, and are not needed
    torch.manual_seed(0)  # the sampling run's seed: it draws z first
    z = torch.randn(n, config["z_dim"])
    classes = None if kind == "plain" else torch.arange(n) % 10 if label is None else torch.full((n,), label)
    with torch.no_grad():
        expected = digits.generator(checkpoint)(z, classes)
    grid = grey_pixels(Image.open(tmp_path / "generated.png")).float() / 255
    assert grid.shape == (-(-n // columns) * 30 + 2, columns * 30 + 2)  # images of 28 pixels, 2 apart
    for cell, image in zip(grid_cells(grid, n, columns), expected):
        assert torch.allclose(cell, image[0], atol=1 / 255)
    assert f"{n} images" in result.stdout and str(tmp_path / "generated.png") in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT[script], "generated.png"])
    assert (tmp_path / CHECKPOINT[script]).read_bytes() == saved  # no training happened

    first = (tmp_path / "generated.png").read_bytes()
    run(script, *sample)
    assert (tmp_path / "generated.png").read_bytes() == first  # the same seed, the same images
    run(script, *sample, "--seed", 1)
    assert (tmp_path / "generated.png").read_bytes() != first
