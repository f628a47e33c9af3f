"""Both scripts under interruption, faults and bad input: clear messages, nothing lost, exact resumes."""
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import CHECKPOINT, OFFLINE_ENV, ROOT, SCRIPTS, make_tiny_mnist, run_script
from PIL import Image

TIMING = {"seconds", "images_per_second"}  # the only columns of metrics.csv that vary between runs


def run_tiny(script, data, out, *extra, check=True):
    return run_script(script, "--data-dir", data, "--out-dir", out, "--batch-size", 50, "--device", "cpu",
                      *extra, check=check)


def assert_one_line_error(result, *fragments, status=None):
    assert result.returncode != 0 if status is None else result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    # tqdm redraws its bar with carriage returns; on a terminal only the error line stays.
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip() and "%|" not in line]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_every_file_is_whole(out):
    """Every result file parses completely: no truncated PNG, CSV or checkpoint."""
    for path in out.iterdir():
        if path.name.startswith(".tmp."):
            continue  # a temporary file, never the result itself
        if path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(open(path)))
            assert rows and all(None not in row.values() for row in rows), path
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("option,value", [("--epochs", "0"), ("--batch-size", "-5"), ("--lr", "0"),
                                          ("--lr", "nan"), ("--z-dim", "0"), ("--hidden-dim", "-1"),
                                          ("--epochs", "ten"), ("--sample", "0")])
def test_non_positive_options_are_a_one_line_argparse_error(script, option, value, tiny_mnist, tmp_path):
    result = run_tiny(script, tiny_mnist, tmp_path / "out", option, value, check=False)
    assert_one_line_error(result, option, status=2)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_out_dir_that_cannot_be_written_is_a_one_line_error(script, tiny_mnist, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = run_tiny(script, tiny_mnist, tmp_path / "a-file" / "out", "--epochs", 1, check=False)
    assert_one_line_error(result, "--out-dir", "cannot be written")


@pytest.mark.parametrize("damage", ["truncated", "not idx"])
def test_damaged_mnist_files_are_named_in_a_one_line_error(damage, tmp_path):
    data = make_tiny_mnist(tmp_path / "data")
    images = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[:5000])
    else:
        images.write_bytes(b"<html>404 Not Found</html>" * 100)
    result = run_tiny("vae.py", data, tmp_path / "out", "--epochs", 1, check=False)
    assert_one_line_error(result, str(images))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_without_a_checkpoint_is_a_one_line_error(script, tiny_mnist, tmp_path):
    result = run_tiny(script, tiny_mnist, tmp_path, "--epochs", 1, "--resume", check=False)
    assert_one_line_error(result, "--resume", "no checkpoint", "train first, without --resume")


@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_from_a_corrupt_or_foreign_checkpoint_is_a_one_line_error(script, tiny_mnist, tmp_path):
    checkpoint = tmp_path / CHECKPOINT[script]
    checkpoint.write_bytes(b"\x80\x02 certainly not a checkpoint")
    result = run_tiny(script, tiny_mnist, tmp_path, "--epochs", 2, "--resume", check=False)
    assert_one_line_error(result, "--resume", "not a readable checkpoint")

    other = "gan.py" if script == "vae.py" else "vae.py"
    run_tiny(other, tiny_mnist, tmp_path / "other", "--epochs", 1)
    shutil.copy(tmp_path / "other" / CHECKPOINT[other], checkpoint)
    result = run_tiny(script, tiny_mnist, tmp_path, "--epochs", 2, "--resume", check=False)
    assert_one_line_error(result, "--resume", f"was not written by {script}")


@pytest.mark.parametrize("script,option,value", [("vae.py", "--z-dim", 7), ("gan.py", "--d-hidden-dim", 7),
                                                 ("gan.py", "--dataset", "fashion-mnist")])
def test_resume_with_another_network_shape_or_dataset_names_the_option(script, option, value, tiny_mnist, tmp_path):
    run_tiny(script, tiny_mnist, tmp_path, "--epochs", 1)
    result = run_tiny(script, tiny_mnist, tmp_path, "--epochs", 2, "--resume", option, value, check=False)
    assert_one_line_error(result, "--resume", option)


# ----------------------------------------------------------------------------- faults
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_loss_that_explodes_stops_the_run_and_keeps_the_last_good_checkpoint(script, tiny_mnist, tmp_path):
    result = run_tiny(script, tiny_mnist, tmp_path, "--epochs", 3, "--lr", "1e30", check=False)
    assert_one_line_error(result, "the loss became", "at epoch 1, batch", "checkpoint of epoch 0 is kept")
    assert torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["epoch"] == 0


def start(script, data, out, *extra):
    """Start a script on tiny data, its output unbuffered so that the test can follow it."""
    return subprocess.Popen([sys.executable, script, "--data-dir", str(data), "--out-dir", str(out),
                             "--batch-size", "10", "--device", "cpu", *map(str, extra)],
                            cwd=ROOT, env={**OFFLINE_ENV, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(process, n):
    """Read the script's output until it has reported `n` finished epochs."""
    done = 0
    while done < n:
        line = process.stdout.readline()
        assert line, f"the script ended early: {process.stderr.read()}"
        done += line.startswith("epoch ")


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_stops_after_the_batch_keeps_the_finished_epochs_and_says_how_to_resume(script, tiny_mnist, tmp_path):
    process = start(script, tiny_mnist, tmp_path, "--epochs", 1000)
    wait_for_epochs(process, 2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stdout
    checkpoint = torch.load(tmp_path / CHECKPOINT[script], weights_only=True)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert checkpoint["epoch"] == len(rows) >= 2
    assert f"interrupted after {len(rows)} finished epochs" in stdout
    assert (tmp_path / "loss.png").exists()
    assert_every_file_is_whole(tmp_path)

    # ...and --resume goes on from there.
    result = run_script(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, "--batch-size", 10,
                        "--device", "cpu", "--epochs", len(rows) + 1, "--resume")
    assert f"epoch {len(rows) + 1:2d}/{len(rows) + 1}" in result.stdout
    assert torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["epoch"] == len(rows) + 1


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_second_ctrl_c_quits_at_once_leaving_no_truncated_file(script, tiny_mnist, tmp_path):
    process = start(script, tiny_mnist, tmp_path, "--epochs", 1000)
    wait_for_epochs(process, 1)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130
    assert_every_file_is_whole(tmp_path)


@pytest.mark.parametrize("script", SCRIPTS)
def test_sigkill_at_any_moment_leaves_only_whole_files(script, tiny_mnist, tmp_path):
    for delay in [0.0, 0.013, 0.031, 0.057, 0.089, 0.11]:  # the first run starts afresh, the others resume
        process = start(script, tiny_mnist, tmp_path, "--epochs", 1000, *(["--resume"] if delay else []))
        wait_for_epochs(process, 1)
        time.sleep(delay)
        process.kill()
        process.communicate()
        assert_every_file_is_whole(tmp_path)


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("script", SCRIPTS)
def test_two_epochs_resumed_for_two_more_equal_four_straight(script, tiny_mnist, tmp_path):
    run_tiny(script, tiny_mnist, tmp_path / "straight", "--epochs", 4)
    run_tiny(script, tiny_mnist, tmp_path / "resumed", "--epochs", 2)
    run_tiny(script, tiny_mnist, tmp_path / "resumed", "--epochs", 4, "--resume")

    straight, resumed = (torch.load(tmp_path / run / CHECKPOINT[script], weights_only=True)
                         for run in ["straight", "resumed"])
    assert straight["epoch"] == resumed["epoch"] == 4
    for key in straight:
        if key != "config":  # the resumed run's config says --resume
            assert_identical(straight[key], resumed[key], key)
    rows = [[{k: v for k, v in row.items() if k not in TIMING}
             for row in csv.DictReader(open(tmp_path / run / "metrics.csv"))] for run in ["straight", "resumed"]]
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
