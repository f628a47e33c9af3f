"""--resume: the run goes on as it was started, bit for bit, changed only by the options typed again (never its
networks, data or seed), and a stop at any moment leaves the last finished epoch's checkpoint."""
import csv
import shutil

import pytest
import torch
from conftest import CHECKPOINT, CONDITIONAL, SCRIPTS, TINY, run

import gan

# Training options other than the defaults: a resumed run keeps them without their being typed again.
STARTED = {"vae.py": ["--epochs", 2, "--lr", 2e-3, "--iw-samples", 0],
           "gan.py": ["--epochs", 2, "--lr", 2e-3, "--r1-gamma", 0, "--ema-decay", 0.9, "--betas", 0.5, 0.9]}


@pytest.mark.parametrize("kind", ["plain", "conditional"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_run_stopped_while_saving_and_resumed_with_nothing_typed_ends_as_a_straight_run_then_only_redraws(
        script, kind, tiny_mnist, tmp_path, monkeypatch):
    started = ["--data-dir", tiny_mnist, *{"plain": TINY, "conditional": CONDITIONAL}[kind], *STARTED[script]]
    run(script, *started, "--out-dir", tmp_path / "straight")

    saved, real_save = [], torch.save

    def ctrl_c_half_way_through_the_second(checkpoint, path):
        if saved:
            open(path, "wb").write(b"half a checkpoint")
            raise KeyboardInterrupt
        saved.append(checkpoint["epoch"])
        real_save(checkpoint, path)
    monkeypatch.setattr(torch, "save", ctrl_c_half_way_through_the_second)
    with pytest.raises(KeyboardInterrupt):
        run(script, *started, "--out-dir", tmp_path / "resumed")
    monkeypatch.undo()
    assert torch.load(tmp_path / "resumed" / CHECKPOINT[script], weights_only=True)["epoch"] == 1
    resume = ["--data-dir", tiny_mnist, "--out-dir", tmp_path / "resumed", "--device", "cpu", "--resume"]
    run(script, *resume)

    straight, resumed = (torch.load(tmp_path / name / CHECKPOINT[script], weights_only=True)
                         for name in ["straight", "resumed"])
    configs = [{k: v for k, v in checkpoint.pop("config").items() if k not in ["out_dir", "resume"]}
               for checkpoint in (straight, resumed)]
    assert configs[0] == configs[1]  # the options it was started with
    for checkpoint in (straight, resumed):
        assert checkpoint["epoch"] == 2 and len(checkpoint["records"]["metrics"]) == 2
        for row in checkpoint["records"]["metrics"]:
            del row["seconds"]
    torch.testing.assert_close(straight, resumed, rtol=0, atol=0)  # bit for bit: networks, optimizers, records
    rows = [[{k: v for k, v in row.items() if k != "seconds"}
             for row in csv.DictReader(open(tmp_path / name / "metrics.csv"))] for name in ["straight", "resumed"]]
    assert rows[0] == rows[1]
    for name in ["samples_01.png", "samples_02.png", "loss.png"]:
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name

    (tmp_path / "resumed" / "loss.png").unlink()  # --resume of the finished run: its final pictures again, no training
    saved = (tmp_path / "resumed" / CHECKPOINT[script]).read_bytes()
    run(script, *resume)
    assert (tmp_path / "resumed" / "loss.png").read_bytes() == (tmp_path / "straight" / "loss.png").read_bytes()
    assert (tmp_path / "resumed" / CHECKPOINT[script]).read_bytes() == saved


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_says_it_keeps_the_networks_data_and_seed_and_applies_a_new_lr_betas_and_batch_size(script, trained,
                                                                                                 tiny_mnist, tmp_path):
    shutil.copy(trained[script] / CHECKPOINT[script], tmp_path)  # one epoch of TINY: z of 3, 6 batches of 50 of MNIST
    kept = {"z-dim": (3, 7), "hidden-dim": (500, 16), "dataset": ("mnist", "fashion-mnist"), "seed": (0, 5),
            **({"d-hidden-dim": (500, 16)} if script == "gan.py" else {})}
    typed = [word for name, (_, value) in kept.items() for word in [f"--{name}", value]]
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--device", "cpu", *typed, "--conditional",
                 "--epochs", 2, "--resume", "--lr", "1e-4", "--batch-size", 100,
                 *(["--betas", "0.5", "0.9"] if script == "gan.py" else []))
    said = [f"--{name}: the checkpoint's {was}, not {value}" for name, (was, value) in kept.items()]
    assert sorted(line for line in result.stdout.splitlines() if ": the checkpoint's " in line) == \
        sorted(said + ["--conditional: the checkpoint's False, not True"])
    checkpoint = torch.load(tmp_path / CHECKPOINT[script], weights_only=True)
    assert {name.replace("-", "_"): was for name, (was, _) in kept.items()}.items() <= checkpoint["config"].items()
    first_layer = checkpoint["model"]["decoder.0.weight"] if script == "vae.py" else checkpoint["g"]["net.0.weight"]
    assert first_layer.shape == (500, 3)
    for optimizer in ["optimizer"] if script == "vae.py" else ["g_optimizer", "d_optimizer"]:
        # MNIST's 300 images (Fashion-MNIST has 200) in 3 batches of 100 in the second epoch, at the new --lr
        assert checkpoint[optimizer]["state"][0]["step"].item() == 6 + 3
        assert [group["lr"] for group in checkpoint[optimizer]["param_groups"]] == [1e-4]
        if script == "gan.py":
            assert [tuple(group["betas"]) for group in checkpoint[optimizer]["param_groups"]] == [(0.5, 0.9)]


def test_the_average_counts_gs_steps_across_a_resume_with_another_batch_size(trained, tiny_mnist, tmp_path,
                                                                             monkeypatch):
    shutil.copy(trained["gan.py"] / "gan.pt", tmp_path)  # one epoch of 6 batches of 50: G's steps 0 to 5
    steps, update_average = [], gan.update_average
    monkeypatch.setattr(gan, "update_average", lambda *args: steps.append(args[-1]) or update_average(*args))
    run("gan.py", "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--device", "cpu", "--resume", "--epochs", 2,
        "--batch-size", 100)
    assert steps == [6, 7, 8]
