"""A tiny run of each script, plain, --conditional and on Fashion-MNIST: every output, and a seed that repeats it."""
import csv
import os
import shutil

import pytest
import torch
from conftest import CHECKPOINT, SCRIPTS, TINY, error_of, run
from PIL import Image

import gan
from models import D, G, VAE
from utils import X_SHAPE

OUTPUTS = {"vae.py": ["vae.pt", "metrics.csv", "reconstruction_01.png", "samples_01.png", "loss.png",
                      "reconstruction_progress.png"],
           "gan.py": ["gan.pt", "metrics.csv", "samples_01.png", "loss.png", "progress.png", "progress.gif"]}
COLUMNS = {"vae.py": ["train_neg_elbo", "test_neg_elbo", "test_reconstruction", "test_kl"], "gan.py": [*gan.COLUMNS]}


@pytest.mark.parametrize("kind", ["plain", "conditional", "fashion-mnist"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_tiny_run_writes_every_output_and_a_checkpoint_that_rebuilds_its_networks(script, kind, trained, conditional,
                                                                                   tiny_mnist, tmp_path):
    if kind == "fashion-mnist":  # at z = 2, which draws the latent planes; without the VAE's bound on -log p(x)
        out = tmp_path / "out"  # does not exist yet: the script makes it
        result = run(script, "--data-dir", tiny_mnist, "--out-dir", out, *TINY, "--z-dim", 2, "--dataset",
                     "fashion-mnist", *(["--iw-samples", 0] if script == "vae.py" else []))
        assert "epoch  1/1  " in result.stdout and "log p(x)" not in result.stdout
    else:  # at z = 3
        out = {"plain": trained, "conditional": conditional}[kind][script]
    z_2 = kind == "fashion-mnist" and script == "vae.py"
    extra = ["class_grid.png"] if kind == "conditional" else ["interpolation.png"] if script == "vae.py" else []
    expected = OUTPUTS[script] + extra + ["latent_space.png", "latent_scatter.png"] * z_2
    assert sorted(os.listdir(out)) == sorted(expected)
    for name in expected:
        if name.endswith((".png", ".gif")):
            Image.open(out / name).load()  # the whole file, not only its header
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [row["epoch"] for row in rows] == ["1"] and list(rows[0]) == ["epoch", *COLUMNS[script], "seconds"]

    checkpoint = torch.load(out / CHECKPOINT[script], weights_only=True)
    config, n_classes = checkpoint["config"], 10 if kind == "conditional" else 0
    assert checkpoint["epoch"] == 1 and config["conditional"] == (kind == "conditional")
    assert config["dataset"] == ("fashion-mnist" if kind == "fashion-mnist" else "mnist")
    optimizer = checkpoint["optimizer" if script == "vae.py" else "d_optimizer"]
    # The tiny Fashion-MNIST has 200 training images, MNIST 300: 4 or 6 batches of 50 make the epoch.
    assert optimizer["state"][0]["step"].item() == (4 if kind == "fashion-mnist" else 6)
    if script == "vae.py":
        VAE(X_SHAPE, config["z_dim"], config["hidden_dim"], n_classes).load_state_dict(checkpoint["model"])
    else:
        D(X_SHAPE, config["d_hidden_dim"], n_classes).load_state_dict(checkpoint["d"])
        for key in ["g", "g_ema"]:
            G(config["z_dim"], X_SHAPE, config["hidden_dim"], n_classes).load_state_dict(checkpoint[key])


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_same_seed_repeats_a_run_and_another_seed_does_not(script, tiny_mnist, trained, tmp_path):
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "same", *TINY)
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "other", *TINY, "--seed", 1)
    a, b, c = (torch.load(out / CHECKPOINT[script], weights_only=True)
               for out in [trained[script], tmp_path / "same", tmp_path / "other"])
    for net in ["model"] if script == "vae.py" else ["g", "g_ema", "d"]:
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
        assert not all(torch.equal(a[net][k], c[net][k]) for k in a[net])


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bad_value_ends_the_run_before_it_writes_anything(script, trained, tiny_mnist, tmp_path):
    shutil.copytree(trained[script], tmp_path, dirs_exist_ok=True)  # a finished run's folder
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    tiny = ["--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY]
    for bad in [["--epochs", 0], ["--sample", 0], ["--sample", 0, "--label", 3], ["--sample", -2]]:
        assert error_of(script, *tiny, *bad).endswith("must be at least 1")
    with pytest.raises(ZeroDivisionError):  # Python's own, at the first epoch's len(loader)
        run(script, *tiny, "--batch-size", 0)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
