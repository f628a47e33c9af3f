"""--resume: it goes on as if never stopped, takes the networks, data and seed from the checkpoint, and a stop at any
moment leaves the last finished epoch's checkpoint."""
import csv
import shutil

import pytest
import torch
from conftest import CHECKPOINT, CONDITIONAL, SCRIPTS, TINY, run


@pytest.mark.parametrize("kind", ["plain", "conditional"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_one_epoch_resumed_for_one_more_equals_two_straight(script, kind, trained, conditional, tiny_mnist, tmp_path):
    shutil.copytree({"plain": trained, "conditional": conditional}[kind][script], tmp_path / "resumed")  # one epoch
    tiny = ["--data-dir", tiny_mnist, *{"plain": TINY, "conditional": CONDITIONAL}[kind], "--epochs", 2]
    run(script, *tiny, "--out-dir", tmp_path / "straight")
    run(script, *tiny, "--out-dir", tmp_path / "resumed", "--resume")

    straight, resumed = (torch.load(tmp_path / name / CHECKPOINT[script], weights_only=True)
                         for name in ["straight", "resumed"])
    for checkpoint in (straight, resumed):
        assert checkpoint["epoch"] == 2 and len(checkpoint["records"]["metrics"]) == 2
        del checkpoint["config"]  # the resumed run's says --resume
        for row in checkpoint["records"]["metrics"]:
            del row["seconds"]
    torch.testing.assert_close(straight, resumed, rtol=0, atol=0)  # bit for bit: networks, optimizers, records
    rows = [[{k: v for k, v in row.items() if k != "seconds"}
             for row in csv.DictReader(open(tmp_path / name / "metrics.csv"))] for name in ["straight", "resumed"]]
    assert rows[0] == rows[1]
    for name in ["samples_01.png", "samples_02.png", "loss.png"]:
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_keeps_the_checkpoints_networks_data_and_seed_and_applies_a_new_lr_betas_and_batch_size(script, trained,
                                                                                                    tiny_mnist,
                                                                                                    tmp_path):
    shutil.copy(trained[script] / CHECKPOINT[script], tmp_path)  # one epoch of TINY: z of 3, 6 batches of 50 of MNIST
    changed = ["--z-dim", 7, "--hidden-dim", 16, "--dataset", "fashion-mnist", "--seed", 5, "--conditional"]
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, *changed, "--epochs", 2, "--resume", "--lr",
        "1e-4", "--batch-size", 100, *(["--betas", "0.5", "0.9", "--d-hidden-dim", 16] if script == "gan.py" else []))
    checkpoint = torch.load(tmp_path / CHECKPOINT[script], weights_only=True)
    assert {"z_dim": 3, "hidden_dim": 500, "dataset": "mnist", "seed": 0, "conditional": False}.items() <= \
        checkpoint["config"].items() and checkpoint["config"].get("d_hidden_dim", 500) == 500
    first_layer = checkpoint["model"]["decoder.0.weight"] if script == "vae.py" else checkpoint["g"]["net.0.weight"]
    assert first_layer.shape == (500, 3)
    for optimizer in ["optimizer"] if script == "vae.py" else ["g_optimizer", "d_optimizer"]:
        # MNIST's 300 images (Fashion-MNIST has 200) in 3 batches of 100 in the second epoch, at the new --lr
        assert checkpoint[optimizer]["state"][0]["step"].item() == 6 + 3
        assert [group["lr"] for group in checkpoint[optimizer]["param_groups"]] == [1e-4]
        if script == "gan.py":
            assert [tuple(group["betas"]) for group in checkpoint[optimizer]["param_groups"]] == [(0.5, 0.9)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_of_a_finished_run_draws_its_final_pictures_again(script, tiny_mnist, trained, tmp_path):
    shutil.copytree(trained[script], tmp_path, dirs_exist_ok=True)
    (tmp_path / "loss.png").unlink()
    checkpoint = (tmp_path / CHECKPOINT[script]).read_bytes()
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--resume")
    assert (tmp_path / "loss.png").read_bytes() == (trained[script] / "loss.png").read_bytes()
    assert (tmp_path / CHECKPOINT[script]).read_bytes() == checkpoint  # nothing trained


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_stop_while_a_checkpoint_is_written_leaves_the_last_finished_epochs_and_resume_goes_on(script, tiny_mnist,
                                                                                              tmp_path, monkeypatch):
    saved, real_save = [], torch.save

    def ctrl_c_half_way_through_the_second(checkpoint, path):
        if saved:
            open(path, "wb").write(b"half a checkpoint")
            raise KeyboardInterrupt
        saved.append(checkpoint["epoch"])
        real_save(checkpoint, path)
    monkeypatch.setattr(torch, "save", ctrl_c_half_way_through_the_second)
    tiny = ["--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY]
    with pytest.raises(KeyboardInterrupt):
        run(script, *tiny, "--epochs", 3)
    monkeypatch.undo()
    assert torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["epoch"] == 1
    run(script, *tiny, "--epochs", 2, "--resume")
    assert torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["epoch"] == 2
