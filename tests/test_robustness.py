"""Both scripts under a learner's mistakes, faults and interruptions: one-line errors, nothing lost, exact resumes."""
import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (CHECKPOINT, OFFLINE_ENV, ROOT, SCRIPTS, TINY, error_of, make_tiny_mnist, run, write_idx)
from PIL import Image

import utils

TIMING = {"seconds", "images_per_second"}  # the only columns of metrics.csv that vary between runs


def assert_every_file_is_whole(out):
    """Every result file parses completely: no truncated PNG, GIF, CSV or checkpoint, and no temporary file."""
    for path in out.iterdir():
        assert not path.name.startswith(".tmp"), path
        if path.suffix in (".png", ".gif"):
            Image.open(path).load()
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(open(path)))
            assert rows and all(None not in row.values() for row in rows), path
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)


def epochs_kept(out, script):
    """The epochs done in the checkpoint in `out`, and the rows of its metrics.csv."""
    rows = list(csv.DictReader(open(out / "metrics.csv"))) if (out / "metrics.csv").exists() else []
    return torch.load(out / CHECKPOINT[script], weights_only=True)["epoch"], len(rows)


# ----------------------------------------------------------------------------- bad options
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("option,value", [("--epochs", "0"), ("--batch-size", "-5"), ("--lr", "0"),
                                          ("--lr", "nan"), ("--z-dim", "0"), ("--hidden-dim", "-1"),
                                          ("--epochs", "ten"), ("--sample", "0"),
                                          ("--seed", "99999999999999999999"), ("--seed", "-1"), ("--seed", "1.5")])
def test_bad_option_values_are_a_one_line_argparse_error(script, option, value, tiny_mnist, tmp_path):
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "out", *TINY, option, value,
                       status=2)
    assert f"argument {option}" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [["--ema-decay", "1"], ["--ema-decay", "-0.1"], ["--betas", "0.5", "1"],
                                    ["--betas", "0.5"], ["--r1-gamma", "-1"], ["--d-hidden-dim", "0"],
                                    ["--r1-gamma", "inf"]])
def test_bad_gan_option_values_are_a_one_line_argparse_error(option, tiny_mnist, tmp_path):
    message = error_of("gan.py", "--data-dir", tiny_mnist, "--out-dir", tmp_path / "out", *TINY, *option, status=2)
    assert f"argument {option[0]}" in message
    assert not (tmp_path / "out").exists()


def test_a_range_error_says_what_the_option_takes():
    assert error_of("vae.py", "--epochs", "0").endswith("argument --epochs: must be at least 1, not 0")
    assert error_of("vae.py", "--lr", "nan").endswith("argument --lr: must be above 0, not nan")
    assert error_of("gan.py", "--ema-decay", "1").endswith(
        "argument --ema-decay: must be at least 0 and below 1, not 1")
    assert error_of("vae.py", "--epochs", "ten").endswith("argument --epochs: invalid int value: 'ten'")


def test_the_largest_seed_torch_takes_is_accepted(tiny_mnist, tmp_path):
    run("gan.py", "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--seed", 2 ** 64 - 1)
    assert torch.load(tmp_path / "gan.pt", weights_only=True)["config"]["seed"] == 2 ** 64 - 1


# ----------------------------------------------------------------------------- damaged data
def images_and_labels(raw, prefix):
    return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


def damage(raw, how):
    """Damage the tiny MNIST in `raw` in one of the ways a download or a copy can go wrong; return what to name."""
    train_images, train_labels = images_and_labels(raw, "train")
    test_images, test_labels = images_and_labels(raw, "t10k")
    labels = torch.arange(100, dtype=torch.uint8) % 10
    if how == "truncated":
        train_images.write_bytes(train_images.read_bytes()[:5000])
        return [train_images]
    if how == "longer than its header says":
        train_labels.write_bytes(train_labels.read_bytes() + b"\0" * 7)
        return [train_labels]
    if how == "a web page":
        train_images.write_bytes(b"<html>404 Not Found</html>" * 100)
        return [train_images]
    if how == "empty":
        test_labels.write_bytes(b"")
        return [test_labels]
    if how == "still gzip-compressed":
        train_images.write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))
        return [train_images]
    if how == "not unsigned bytes":  # a valid IDX file of 32-bit integers (type 0x0C)
        write_idx(test_labels, labels, magic=0x0C01)
        return [test_labels]
    if how == "labels in the images file":
        shutil.copy(train_labels, train_images)
        return [train_images]
    if how == "images in the labels file":
        shutil.copy(test_images, test_labels)
        return [test_labels]
    if how == "images of another size":
        write_idx(test_images, torch.zeros(100, 32, 32, dtype=torch.uint8))
        return [test_images, "32x32"]
    if how == "fewer labels than images":
        write_idx(test_labels, labels[:90])
        return [test_images, test_labels]
    if how == "the other split's labels":
        shutil.copy(train_labels, test_labels)  # 300 labels for 100 images
        return [test_images, test_labels]
    if how == "a label outside 0-9":
        write_idx(train_labels, torch.where(torch.arange(300) == 7, 10, torch.arange(300) % 10).byte())
        return [train_labels, "10]"]
    if how == "a class with no image":
        write_idx(test_labels, torch.where(labels == 9, 8, labels).byte())
        return [test_labels, "8]"]
    if how == "a folder":
        test_images.unlink()
        test_images.mkdir()
        return [test_images]
    raise ValueError(how)


DAMAGE = ["truncated", "longer than its header says", "a web page", "empty", "still gzip-compressed",
          "not unsigned bytes", "labels in the images file", "images in the labels file", "images of another size",
          "fewer labels than images", "the other split's labels", "a label outside 0-9", "a class with no image",
          "a folder"]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("how", DAMAGE)
def test_every_damaged_data_file_is_a_one_line_error_that_names_it_before_anything_is_written(script, how, tmp_path):
    data = make_tiny_mnist(tmp_path / "data")
    names = damage(data / "MNIST" / "raw", how)
    message = error_of(script, "--data-dir", data, "--out-dir", tmp_path / "out", *TINY)
    for name in names:
        assert str(name) in message, message
    assert "delete" in message and "run again" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_missing_file_is_downloaded_and_offline_that_is_a_one_line_error_naming_the_folder(script, tmp_path):
    data = make_tiny_mnist(tmp_path / "data")
    (data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    message = error_of(script, "--data-dir", data, "--out-dir", tmp_path / "out", *TINY)
    assert message.startswith(f"error: MNIST is not in {data / 'MNIST' / 'raw'} and could not be downloaded")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- --resume's mistakes
@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_with_nothing_to_resume_or_the_other_scripts_run_is_a_one_line_error(script, tiny_mnist, trained,
                                                                                  tmp_path):
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--resume")
    assert message.startswith(f"error: --resume: there is no {tmp_path / CHECKPOINT[script]} to go on from")
    assert "without --resume" in message
    other = "gan.py" if script == "vae.py" else "vae.py"
    before = sorted(os.listdir(trained[other]))
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", trained[other], *TINY, "--resume")
    assert message.startswith(f"error: --resume: there is no {trained[other] / CHECKPOINT[script]}")
    assert sorted(os.listdir(trained[other])) == before


@pytest.mark.parametrize("script,option,value", [("vae.py", "--z-dim", 7), ("gan.py", "--d-hidden-dim", 7),
                                                 ("gan.py", "--dataset", "fashion-mnist"), ("vae.py", "--seed", 5)])
def test_resume_with_another_network_data_or_seed_names_the_option(script, option, value, tiny_mnist, trained,
                                                                   tmp_path):
    shutil.copy(trained[script] / CHECKPOINT[script], tmp_path)
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 2, "--resume",
                       option, value)
    assert message.startswith("error: --resume: ") and f"{option} cannot change when resuming" in message


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_of_a_finished_run_draws_its_final_pictures_again_and_says_how_to_go_on(script, tiny_mnist, trained,
                                                                                       tmp_path):
    shutil.copytree(trained[script], tmp_path, dirs_exist_ok=True)
    (tmp_path / "loss.png").unlink()
    checkpoint = (tmp_path / CHECKPOINT[script]).read_bytes()
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--resume")
    assert "all 1 epochs are done: drawing the final pictures again (for more, raise --epochs)" in result.stdout
    assert (tmp_path / "loss.png").read_bytes() == (trained[script] / "loss.png").read_bytes()
    assert (tmp_path / CHECKPOINT[script]).read_bytes() == checkpoint  # nothing trained


# ----------------------------------------------------------------------------- nan
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_loss_that_explodes_stops_the_run_and_keeps_the_last_finite_epoch(script, tiny_mnist, tmp_path):
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 3, "--lr", "1e30")
    assert message.startswith("error: epoch 1 ended with ") and "nan" in message
    assert message.endswith("the checkpoint of epoch 0 is kept; a smaller --lr may help")
    assert epochs_kept(tmp_path, script) == (0, 0)


def test_a_vae_whose_test_pass_is_nan_stops_and_resumes_with_a_smaller_lr(tiny_mnist, tmp_path):
    # One step an epoch: its training loss is computed before the step, which makes the weights nan; only the
    # test pass after it can tell.
    tiny = ["--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--batch-size", 300]
    run("vae.py", *tiny, "--epochs", 1)
    message = error_of("vae.py", *tiny, "--epochs", 2, "--lr", "1e30", "--resume")
    assert message.startswith("error: epoch 2 ended with ") and "'test_neg_elbo': nan" in message
    assert epochs_kept(tmp_path, "vae.py") == (1, 1)
    run("vae.py", *tiny, "--epochs", 2, "--resume")
    assert epochs_kept(tmp_path, "vae.py") == (2, 2)


# ----------------------------------------------------------------------------- stops and faults
def start(script, data, out, *extra):
    """Start a script on tiny data in a separate process, its output unbuffered so that the test can follow it."""
    return subprocess.Popen([sys.executable, script, "--data-dir", str(data), "--out-dir", str(out),
                             "--batch-size", "10", "--device", "cpu", "--z-dim", "3", *map(str, extra)],
                            # One thread each: the data are tiny, and the two runs share the cores.
                            cwd=ROOT, env={**OFFLINE_ENV, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as in a terminal: a shell's background job, as CI may run in, ignores it.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_keeps_the_finished_epochs_says_so_in_one_line_and_resume_goes_on(tiny_mnist, tmp_path):
    # A real Ctrl-C in each script, side by side (starting Python and torch is most of the time here).
    processes = {script: start(script, tiny_mnist, tmp_path / script, "--epochs", 1000) for script in SCRIPTS}
    for process in processes.values():
        epochs = 0
        while epochs < 2:
            line = process.stdout.readline()
            assert line, f"the script ended early: {process.stderr.read()}"
            epochs += line.startswith("epoch ")
        process.send_signal(signal.SIGINT)
    for script, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert stderr.strip() == "Ctrl-C: stopped, the finished epochs kept: the same command with --resume goes on"
        epoch, rows = epochs_kept(tmp_path / script, script)
        assert epoch == rows >= 2
        assert_every_file_is_whole(tmp_path / script)
        result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / script, "--batch-size", 10,
                     "--device", "cpu", "--z-dim", 3, "--epochs", epoch + 1, "--resume")
        assert f"going on from epoch {epoch}" in result.stdout and f"epoch {epoch + 1:2d}/{epoch + 1}" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_stop_while_the_final_pictures_are_drawn_is_mended_by_resume(script, tiny_mnist, tmp_path, monkeypatch):
    tiny = ["--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY]
    run(script, *tiny)
    drawn = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix in (".png", ".gif")}
    finals, real_atomic = [], utils.atomic

    def ctrl_c_at_the_second_final_picture(path):
        if not os.path.basename(path).startswith(("samples_", "reconstruction_0")) and path.suffix != ".pt" and \
                path.name != "metrics.csv":
            finals.append(path.name)
            if len(finals) == 2:
                raise KeyboardInterrupt
        return real_atomic(path)
    monkeypatch.setattr(utils, "atomic", lambda path: ctrl_c_at_the_second_final_picture(Path(path)))
    with pytest.raises(KeyboardInterrupt):
        run(script, *tiny, "--epochs", 2, "--resume")
    monkeypatch.undo()
    assert epochs_kept(tmp_path, script) == (2, 2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix in (".png", ".gif")}
    assert any(before[name] == picture for name, picture in drawn.items() if not name.startswith("samples_"))
    run(script, *tiny, "--epochs", 2, "--resume")  # every epoch done: the final pictures are drawn again
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix in (".png", ".gif")}
    finals = [name for name in after if not name.startswith(("samples_", "reconstruction_0"))]
    assert finals and all(after[name] != drawn[name] for name in finals)  # all of epoch 2 now, none of epoch 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_full_disk_or_a_closed_output_ends_in_pythons_error_and_keeps_the_last_epoch_whole(script, tiny_mnist,
                                                                                             tmp_path, monkeypatch):
    saved, real_save = [], torch.save

    def save_until_the_disk_is_full(checkpoint, path):  # epochs 0 and 1 fit; epoch 2 fails half-way, as a disk does
        if len(saved) == 2:
            open(path, "wb").write(b"half a checkpoint")
            raise OSError(28, "No space left on device")
        saved.append(checkpoint["epoch"])
        real_save(checkpoint, path)
    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    with pytest.raises(OSError, match="No space left on device"):
        run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "full", *TINY, "--epochs", 3)
    monkeypatch.undo()
    assert epochs_kept(tmp_path / "full", script) == (1, 1)  # metrics.csv is never ahead of the checkpoint
    assert_every_file_is_whole(tmp_path / "full")

    class ClosedPipe(io.StringIO):  # `python vae.py | head -2`: the reader goes after the first epoch's line
        def write(self, text):
            if self.getvalue().count("\n") >= 2:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)
    with pytest.raises(BrokenPipeError), contextlib.redirect_stdout(ClosedPipe()):
        __import__(script[:-3]).main(["--data-dir", str(tiny_mnist), "--out-dir", str(tmp_path / "pipe"),
                                      *map(str, TINY), "--epochs", "3"])
    assert epochs_kept(tmp_path / "pipe", script) == (2, 2)  # the second epoch's line could not be printed
    assert_every_file_is_whole(tmp_path / "pipe")


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("script", SCRIPTS)
def test_two_epochs_resumed_for_two_more_equal_four_straight(script, tiny_mnist, tmp_path):
    tiny = ["--data-dir", tiny_mnist, "--batch-size", 50, "--device", "cpu", "--z-dim", 3]
    run(script, *tiny, "--out-dir", tmp_path / "straight", "--epochs", 4)
    run(script, *tiny, "--out-dir", tmp_path / "resumed", "--epochs", 2)
    run(script, *tiny, "--out-dir", tmp_path / "resumed", "--epochs", 4, "--resume")

    straight, resumed = (torch.load(tmp_path / name / CHECKPOINT[script], weights_only=True)
                         for name in ["straight", "resumed"])
    assert straight["epoch"] == resumed["epoch"] == 4
    for key in straight:
        if key != "config":  # the resumed run's config says --resume
            assert_identical(straight[key], resumed[key], key)
    rows = [[{k: v for k, v in row.items() if k not in TIMING}
             for row in csv.DictReader(open(tmp_path / name / "metrics.csv"))] for name in ["straight", "resumed"]]
    assert rows[0] == rows[1] and len(rows[0]) == 4
    for name in os.listdir(tmp_path / "straight"):
        if name.startswith("samples_"):
            assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()


def assert_identical(a, b, where):
    """Bit-for-bit equality of nested checkpoints (dicts, lists, tensors, numbers); timing aside."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            if k not in TIMING:
                assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_applies_a_new_learning_rate_betas_and_batch_size_from_the_next_epoch(script, tiny_mnist, trained,
                                                                                   tmp_path):
    shutil.copy(trained[script] / CHECKPOINT[script], tmp_path)  # one epoch of TINY: 6 batches of 50
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 2, "--resume", "--lr", "1e-4",
        "--batch-size", 100, *(["--betas", "0.5", "0.9"] if script == "gan.py" else []))
    checkpoint = torch.load(tmp_path / CHECKPOINT[script], weights_only=True)
    for optimizer in ["optimizer"] if script == "vae.py" else ["g_optimizer", "d_optimizer"]:
        assert checkpoint[optimizer]["state"][0]["step"].item() == 6 + 3  # the second epoch took 3 steps of 100
        assert [group["lr"] for group in checkpoint[optimizer]["param_groups"]] == [1e-4]
        if script == "gan.py":
            assert [tuple(group["betas"]) for group in checkpoint[optimizer]["param_groups"]] == [(0.5, 0.9)]


# ----------------------------------------------------------------------------- one run per folder, no user file touched
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_fresh_run_replaces_the_earlier_run_and_nothing_else_saying_so(script, tiny_mnist, trained, tmp_path):
    shutil.copytree(trained[script], tmp_path, dirs_exist_ok=True)
    shutil.copy(tmp_path / "samples_01.png", tmp_path / "samples_02.png")  # as if the earlier run had gone on
    shutil.copy(tmp_path / "loss.png", f"{tmp_path}/.tmp-999-loss.png")  # and left a temporary file, killed
    users = {"holiday_photo.png": b"the user's", "notes.txt": b"the user's", "gan_progress.gif": b"a README's"}
    for name, content in users.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "zz_album.png").mkdir()
    earlier = [name for name in os.listdir(tmp_path) if name not in users and name != "zz_album.png"]
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 2)
    replacing = f"replacing the earlier run in {tmp_path}: deleting its {len(earlier)} files"
    assert result.stdout.splitlines()[1] == replacing
    assert all((tmp_path / name).read_bytes() == content for name, content in users.items())
    assert (tmp_path / "zz_album.png").is_dir()
    assert not (tmp_path / ".tmp-999-loss.png").exists()
    assert epochs_kept(tmp_path, script) == (2, 2)
    written = sorted(set(os.listdir(tmp_path)) - set(users) - {"zz_album.png"})
    assert written == sorted(os.listdir(trained[script]) + (["samples_02.png"] + ["reconstruction_02.png"] *
                                                            (script == "vae.py")))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_fresh_run_stopped_while_it_replaces_the_earlier_run_leaves_it_to_replace_next_time(script, tiny_mnist,
                                                                                          trained, tmp_path,
                                                                                          monkeypatch):
    shutil.copytree(trained[script], tmp_path, dirs_exist_ok=True)
    removed, real_remove = [], os.remove

    def stop_at_the_third(path):
        if len(removed) == 2:
            raise KeyboardInterrupt
        removed.append(os.path.basename(path))
        real_remove(path)
    monkeypatch.setattr(os, "remove", stop_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY)
    monkeypatch.undo()
    assert CHECKPOINT[script] not in removed and (tmp_path / CHECKPOINT[script]).exists()  # the checkpoint goes last
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY)
    assert sorted(os.listdir(tmp_path)) == sorted(os.listdir(trained[script]))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_folder_with_files_of_the_scripts_names_but_not_this_scripts_run_is_refused(script, tiny_mnist, trained,
                                                                                      tmp_path):
    other = "gan.py" if script == "vae.py" else "vae.py"
    before = {p.name: p.read_bytes() for p in trained[other].iterdir()}
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", trained[other], *TINY)
    assert message.startswith(f"error: --out-dir {trained[other]} holds ") and " and more but no " in message
    assert message.endswith(f"but no {CHECKPOINT[script]} of an earlier run to replace; pass another --out-dir")
    assert {p.name: p.read_bytes() for p in trained[other].iterdir()} == before
    (tmp_path / "loss.png").write_bytes(b"the user's own")  # a folder of the user's, with a name a run would write
    assert "holds loss.png" in error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY)
    assert (tmp_path / "loss.png").read_bytes() == b"the user's own" and os.listdir(tmp_path) == ["loss.png"]
