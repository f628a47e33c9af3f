"""Both scripts under interruption, faults and bad input: clear messages, nothing lost, exact resumes."""
import concurrent.futures
import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import (CHECKPOINT, OFFLINE_ENV, ROOT, SCRIPTS, TINY, error_of, make_tiny_mnist, run, run_script,
                      write_idx)
from PIL import Image

import models
import utils

TIMING = {"seconds", "images_per_second"}  # the only columns of metrics.csv that vary between runs


def assert_every_file_is_whole(out):
    """Every result file parses completely: no truncated PNG, GIF, CSV or checkpoint."""
    for path in out.iterdir():
        if path.name.startswith(".tmp."):
            continue  # a temporary file, never the result itself
        if path.suffix in (".png", ".gif"):
            Image.open(path).load()
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(open(path)))
            assert rows and all(None not in row.values() for row in rows), path
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)


# ----------------------------------------------------------------------------- bad options
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("option,value", [("--epochs", "0"), ("--batch-size", "-5"), ("--lr", "0"),
                                          ("--lr", "nan"), ("--z-dim", "0"), ("--hidden-dim", "-1"),
                                          ("--epochs", "ten"), ("--sample", "0"),
                                          ("--seed", "99999999999999999999"), ("--seed", "-1"), ("--seed", "1.5")])
def test_bad_option_values_are_a_one_line_argparse_error(script, option, value, tiny_mnist, tmp_path):
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "out", *TINY, option, value,
                       status=2)
    assert option in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [["--ema-decay", "1"], ["--ema-decay", "-0.1"], ["--betas", "0.5", "1"],
                                    ["--betas", "0.5"], ["--r1-gamma", "-1"], ["--d-hidden-dim", "0"]])
def test_bad_gan_option_values_are_a_one_line_argparse_error(option, tiny_mnist, tmp_path):
    message = error_of("gan.py", "--data-dir", tiny_mnist, "--out-dir", tmp_path / "out", *TINY, *option, status=2)
    assert option[0] in message
    assert not (tmp_path / "out").exists()


def test_the_largest_seed_torch_takes_is_accepted(tiny_mnist, tmp_path):
    run("gan.py", "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--seed", 2 ** 64 - 1)
    assert torch.load(tmp_path / "gan.pt", weights_only=True)["config"]["seed"] == 2 ** 64 - 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_out_dir_that_cannot_be_written_is_a_one_line_error(script, tiny_mnist, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "a-file" / "out", *TINY)
    assert "--out-dir" in message and "cannot be written" in message


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
        return [test_images]
    if how == "fewer labels than images":
        write_idx(test_labels, labels[:90])
        return [test_images, test_labels]
    if how == "the other split's labels":
        shutil.copy(train_labels, test_labels)  # 300 labels for 100 images
        return [test_images, test_labels]
    if how == "a label outside 0-9":
        write_idx(train_labels, torch.where(torch.arange(300) == 7, 10, torch.arange(300) % 10).byte())
        return [train_labels, "label 10"]
    if how == "a class with no image":
        write_idx(test_labels, torch.where(labels == 9, 8, labels).byte())
        return [test_labels, "class 9"]
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
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_missing_file_is_downloaded_and_offline_that_is_a_one_line_error_naming_the_folder(script, tmp_path):
    data = make_tiny_mnist(tmp_path / "data")
    (data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    message = error_of(script, "--data-dir", data, "--out-dir", tmp_path / "out", *TINY)
    assert message.startswith(f"error: MNIST is not in {data / 'MNIST' / 'raw'} and could not be downloaded")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- bad checkpoints
@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_without_a_checkpoint_is_a_one_line_error(script, tiny_mnist, tmp_path):
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--resume")
    assert "--resume" in message and "no checkpoint" in message and "train first, without --resume" in message


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_from_a_corrupt_or_foreign_checkpoint_is_a_one_line_error(script, tiny_mnist, trained, tmp_path):
    checkpoint = tmp_path / CHECKPOINT[script]
    checkpoint.write_bytes(b"\x80\x02 certainly not a checkpoint")
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--epochs", 2, "--resume")
    assert "--resume" in message and "not a readable checkpoint" in message

    other = "gan.py" if script == "vae.py" else "vae.py"
    shutil.copy(trained[other] / CHECKPOINT[other], checkpoint)
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--epochs", 2, "--resume")
    assert "--resume" in message and f"was not written by {script}" in message


@pytest.mark.parametrize("script,option,value", [("vae.py", "--z-dim", 7), ("gan.py", "--d-hidden-dim", 7),
                                                 ("gan.py", "--dataset", "fashion-mnist")])
def test_resume_with_another_network_shape_or_dataset_names_the_option(script, option, value, tiny_mnist, trained,
                                                                       tmp_path):
    shutil.copy(trained[script] / CHECKPOINT[script], tmp_path)
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--epochs", 2, "--resume",
                       option, value)
    assert "--resume" in message and option in message


# ----------------------------------------------------------------------------- faults
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_loss_that_explodes_stops_the_run_and_keeps_the_last_good_checkpoint(script, tiny_mnist, tmp_path):
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 3, "--lr", "1e30")
    assert "the loss became" in message and "at epoch 1, batch" in message
    assert "checkpoint of epoch 0 is kept" in message
    assert torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["epoch"] == 0


@pytest.mark.parametrize("script,option", [("vae.py", "--hidden-dim"), ("gan.py", "--hidden-dim"),
                                           ("gan.py", "--d-hidden-dim")])
def test_networks_too_large_for_memory_are_a_one_line_error_naming_what_to_lower(script, option, tiny_mnist,
                                                                                  tmp_path):
    # A 200,000 x 200,000 layer needs 160 GB.
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, option, 200_000)
    assert message.startswith("error: out of memory") and "149.0 GiB" in message and option in message


@pytest.mark.parametrize("script,network", [("vae.py", models.VAE), ("gan.py", models.D)])
def test_running_out_of_gpu_memory_while_training_is_a_one_line_error(script, network, tiny_mnist, tmp_path,
                                                                      monkeypatch):
    def out_of_memory(*args, **kwargs):  # what CUDA raises for a batch too large for the GPU
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity "
                                     "of 7.79 GiB of which 1.02 GiB is free.")
    monkeypatch.setattr(network, "forward" if network is models.D else "encode", out_of_memory)
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY)
    assert message == (f"error: out of memory (one tensor needed 2.50 GiB); lower --batch-size, --hidden-dim or "
                       f"{'--z-dim' if script == 'vae.py' else '--d-hidden-dim'} (with --sample: N)")


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_outside_the_training_loop_exits_with_130_and_no_traceback(script, tiny_mnist, tmp_path, monkeypatch):
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(utils, "save_figure", ctrl_c)  # pressed while the final figures are drawn
    assert error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, status=130) == "interrupted"
    assert torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["epoch"] == 1


# ----------------------------------------------------------------------------- Ctrl-C and kills (real processes)
def start(script, data, out, *extra):
    """Start a script on tiny data in a separate process, its output unbuffered so that the test can follow it."""
    return subprocess.Popen([sys.executable, script, "--data-dir", str(data), "--out-dir", str(out),
                             "--batch-size", "10", "--device", "cpu", *map(str, extra)],
                            # One thread each: the data are tiny, and several runs share the cores.
                            cwd=ROOT, env={**OFFLINE_ENV, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Ctrl-C as in a terminal: a shell's background job, as CI may run in, ignores it.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_epochs(process, n):
    """Read the script's output until it has reported `n` finished epochs."""
    done = 0
    while done < n:
        line = process.stdout.readline()
        assert line, f"the script ended early: {process.stderr.read()}"
        done += line.startswith("epoch ")


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_or_a_closed_output_keep_the_finished_epochs_and_say_so_in_one_line(script, tiny_mnist, tmp_path):
    # Two runs side by side (starting Python and torch is most of a test's time): one gets Ctrl-C, the
    # other's output is closed after its first epoch, as by `python vae.py --epochs 1000 | head -2`.
    out, piped = tmp_path / "out", tmp_path / "piped"
    process, closed = (start(script, tiny_mnist, folder, "--epochs", 1000) for folder in [out, piped])
    first_lines = [closed.stdout.readline() for _ in range(2)]  # the device, then epoch 1
    assert first_lines[1].startswith("epoch  1/1000")
    closed.stdout.close()
    wait_for_epochs(process, 2)
    process.send_signal(signal.SIGINT)

    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "%|" not in stderr  # the output is not a terminal: no progress bar
    assert "--resume" in stdout
    checkpoint = torch.load(out / CHECKPOINT[script], weights_only=True)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert checkpoint["epoch"] == len(rows) >= 2
    assert f"interrupted after {len(rows)} finished epochs" in stdout
    assert (out / "loss.png").exists()
    assert_every_file_is_whole(out)

    # The closed output stopped the other run at the next epoch's line, printed after its checkpoint was saved.
    closed.wait(timeout=60)
    stderr = closed.stderr.read()
    assert closed.returncode == 1 and "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "the output was closed" in stderr, stderr
    epoch = torch.load(piped / CHECKPOINT[script], weights_only=True)["epoch"]
    assert 2 <= epoch < 1000 and stderr.strip().endswith(f"the checkpoint of epoch {epoch} is kept whole in "
                                                         f"{piped / CHECKPOINT[script]}")
    assert_every_file_is_whole(piped)

    # ...and --resume goes on from where the first stopped.
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", out, "--batch-size", 10, "--device", "cpu",
                 "--epochs", len(rows) + 1, "--resume")
    assert f"going on from epoch {len(rows)}" in result.stdout
    assert f"epoch {len(rows) + 1:2d}/{len(rows) + 1}" in result.stdout
    assert torch.load(out / CHECKPOINT[script], weights_only=True)["epoch"] == len(rows) + 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_sigkill_at_any_moment_leaves_only_whole_files(script, tiny_mnist, trained, tmp_path):
    # Six runs side by side, each killed at another moment after it reported an epoch, while it writes that
    # epoch's results. The first starts afresh; the others resume a finished run, so that the kill can hit
    # files that are being replaced.
    delays = [0.0, 0.013, 0.031, 0.057, 0.089, 0.11]
    outs = [tmp_path / str(i) for i in range(len(delays))]
    for out in outs[1:]:
        shutil.copytree(trained[script], out)
    processes = [start(script, tiny_mnist, out, "--epochs", 1000, *(["--resume"] if i else []))
                 for i, out in enumerate(outs)]

    def kill_after_an_epoch(process, delay):
        wait_for_epochs(process, 1)
        time.sleep(delay)
        process.kill()

    with concurrent.futures.ThreadPoolExecutor(len(processes)) as pool:  # each is killed as soon as it is ready
        for killed in [pool.submit(kill_after_an_epoch, p, delay) for p, delay in zip(processes, delays)]:
            killed.result()
    for process, out in zip(processes, outs):
        process.communicate()
        assert process.returncode == -signal.SIGKILL
        assert_every_file_is_whole(out)


def test_a_missing_or_mismatched_package_is_a_one_line_error(tmp_path):
    # As PyPI's torchvision fails to import beside a torch built for the CPU elsewhere (here, torch itself fails:
    # faster, and caught alike).
    (tmp_path / "torch.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    result = subprocess.run([sys.executable, "vae.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            env={**OFFLINE_ENV, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("error: operator torchvision::nms does not exist; install what the scripts need "
                                     "with: pip install -r requirements.txt")


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_full_disk_ends_in_one_line_that_says_the_last_epochs_checkpoint_is_kept(script, tiny_mnist, tmp_path,
                                                                                   monkeypatch):
    saved = []
    real_save = torch.save

    def save_until_the_disk_is_full(checkpoint, path):  # epochs 0 and 1 fit; epoch 2 fails as torch.save does
        if len(saved) == 2:
            open(path, "wb").write(b"half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        saved.append(checkpoint["epoch"])
        real_save(checkpoint, path)
    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 3)
    monkeypatch.undo()
    checkpoint = tmp_path / CHECKPOINT[script]
    assert message.startswith(f"error: {checkpoint} could not be written (RuntimeError while saving; ")
    assert message.endswith(f"the checkpoint of epoch 1 is kept whole in {checkpoint}")
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    assert len(list(csv.DictReader(open(tmp_path / "metrics.csv")))) == 1  # never ahead of the checkpoint
    assert_every_file_is_whole(tmp_path)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_picture_that_cannot_be_written_ends_in_one_line(script, tiny_mnist, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(utils, "save_image", full_disk)  # the first epoch's samples_01.png
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY)
    assert "could not be written (No space left on device; " in message
    assert message.endswith(f"the checkpoint of epoch 0 is kept whole in {tmp_path / CHECKPOINT[script]}")


def test_a_one_line_error_reaches_the_terminal_as_one_line_with_exit_status_1(tmp_path):
    result = run_script("gan.py", "--data-dir", tmp_path / "nowhere", "--out-dir", tmp_path / "out", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: MNIST is not in ") and len(result.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("script", SCRIPTS)
def test_two_epochs_resumed_for_two_more_equal_four_straight(script, tiny_mnist, tmp_path):
    tiny = ["--data-dir", tiny_mnist, "--batch-size", 50, "--device", "cpu"]
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
    assert os.path.getsize(tmp_path / "resumed" / "loss.png") > 0


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
def test_resume_applies_a_new_learning_rate_and_says_so(script, tiny_mnist, trained, tmp_path):
    shutil.copy(trained[script] / CHECKPOINT[script], tmp_path)  # one epoch of TINY
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 2, "--resume",
                 "--lr", "1e-4", *(["--betas", "0.5", "0.9"] if script == "gan.py" else []))
    assert "going on from epoch 1, with --lr 0.0001 (was 0.001)" in result.stdout
    checkpoint = torch.load(tmp_path / CHECKPOINT[script], weights_only=True)
    optimizers = ["optimizer"] if script == "vae.py" else ["g_optimizer", "d_optimizer"]
    for optimizer in optimizers:  # what the second epoch's steps used
        assert [group["lr"] for group in checkpoint[optimizer]["param_groups"]] == [1e-4]
    if script == "gan.py":
        assert "--betas [0.5, 0.9] (was [0.0, 0.99])" in result.stdout
        assert all(group["betas"] == (0.5, 0.9) for o in optimizers for group in checkpoint[o]["param_groups"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_refuses_another_seed_and_a_checkpoint_of_the_previous_format(script, tiny_mnist, trained, tmp_path):
    shutil.copy(trained[script] / CHECKPOINT[script], tmp_path)
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--epochs", 2, "--resume",
                       "--seed", 5)
    assert "--seed" in message and "cannot change" in message
    checkpoint = torch.load(tmp_path / CHECKPOINT[script], weights_only=True)
    del checkpoint["version"]  # as the scripts wrote it before their records changed
    torch.save(checkpoint, tmp_path / CHECKPOINT[script])
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--epochs", 2, "--resume")
    assert "written by an older" in message and "without --resume" in message


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_fresh_run_replaces_the_earlier_run_in_its_folder_saying_so(script, tiny_mnist, trained, tmp_path):
    shutil.copytree(trained[script], tmp_path, dirs_exist_ok=True)
    shutil.copy(tmp_path / "samples_01.png", tmp_path / "samples_02.png")  # as if the earlier run had gone on
    (tmp_path / "notes.txt").write_text("the user's own")
    before = {p.name for p in tmp_path.iterdir()}
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY)
    line = result.stdout.splitlines()[1]  # after the device
    pictures = len([name for name in before if name.endswith((".png", ".gif"))])
    assert line == f"replacing the earlier run in {tmp_path}: deleting {CHECKPOINT[script]}, metrics.csv and " \
                   f"{pictures} pictures"
    after = {p.name for p in tmp_path.iterdir()}
    assert "samples_02.png" in before and "samples_02.png" not in after and "notes.txt" in after
    assert len(list(csv.DictReader(open(tmp_path / "metrics.csv")))) == 1
    assert torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_out_dir_holding_the_other_scripts_results_is_refused(script, tiny_mnist, trained):
    other = "gan.py" if script == "vae.py" else "vae.py"
    before = {p.name: p.stat().st_mtime for p in trained[other].iterdir()}
    message = error_of(script, "--data-dir", tiny_mnist, "--out-dir", trained[other], *TINY)
    assert message == f"error: --out-dir {trained[other]} holds the results of {other} ({CHECKPOINT[other]}); " \
                      f"pass another --out-dir"
    assert {p.name: p.stat().st_mtime for p in trained[other].iterdir()} == before
