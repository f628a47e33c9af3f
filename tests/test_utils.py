"""utils.py: data reading, the batch loader, devices, files written whole, and what a run prints."""
import contextlib
import importlib
import io
import os
import re

import pytest
import torch
from conftest import CHECKPOINT, SCRIPTS, TINY, error_of, run
from PIL import Image

import utils

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def test_load_dataset_reads_the_raw_files(tiny_mnist):
    (images, labels), (test_images, test_labels), classes = utils.load_dataset("mnist", tiny_mnist)
    assert images.shape == (300, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (300,) and labels.dtype == torch.int64
    assert labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert torch.equal(images[:, 0, 0].long(), labels * 25)
    assert classes == [str(digit) for digit in range(10)]
    assert test_images.shape == (100, 28, 28) and torch.equal(test_images[:, 0, 0].long(), test_labels * 25)


def test_fashion_mnist_comes_from_its_own_folder_with_its_class_names(tiny_mnist):
    (images, labels), _, classes = utils.load_dataset("fashion-mnist", tiny_mnist)
    assert images.shape == (200, 28, 28) and torch.equal(images[:, 0, 0].long(), labels * 25)
    assert classes == FASHION_CLASSES


@pytest.mark.slow
def test_the_real_datasets_hold_60000_and_10000_images_of_10_classes(real_mnist, real_fashion_mnist):
    for name, data_dir in [("mnist", real_mnist), ("fashion-mnist", real_fashion_mnist)]:
        train, test, classes = utils.load_dataset(name, data_dir)
        for (images, labels), n in [(train, 60_000), (test, 10_000)]:
            assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
            assert torch.bincount(labels).min() > n // 20 and len(classes) == 10
    assert not torch.equal(utils.load_dataset("mnist", real_mnist)[1][0],
                           utils.load_dataset("fashion-mnist", real_fashion_mnist)[1][0])


def test_loader_yields_every_image_once_as_floats_in_0_1(tiny_mnist):
    (images, labels), _, _ = utils.load_dataset("mnist", tiny_mnist)
    loader = utils.BatchLoader(images, labels, batch_size=64, device=torch.device("cpu"))
    batches = list(loader)
    assert len(loader) == len(batches) == 5  # 4 full batches of 64 and one of 44
    assert [len(x) for x, _ in batches] == [64, 64, 64, 64, 44]
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0, 0] * 255, y.float() * 25)  # images stay with their labels
    expected = images.unsqueeze(1).float() / 255
    assert sorted(map(tuple, x.flatten(1).tolist())) == sorted(map(tuple, expected.flatten(1).tolist()))


def test_loader_shuffles_each_epoch_and_the_seed_repeats_the_order(tiny_mnist):
    (images, labels), _, _ = utils.load_dataset("mnist", tiny_mnist)
    loader = utils.BatchLoader(images, labels, batch_size=300, device=torch.device("cpu"))
    torch.manual_seed(0)
    first, second = [next(iter(loader))[1] for _ in range(2)]
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    assert torch.equal(next(iter(loader))[1], first)
    in_order = utils.BatchLoader(images, labels, batch_size=300, device=torch.device("cpu"), shuffle=False)
    assert torch.equal(next(iter(in_order))[1], labels)


@pytest.mark.parametrize("script,dataset,folder", [("vae.py", "mnist", "MNIST"),
                                                   ("gan.py", "fashion-mnist", "FashionMNIST")])
def test_missing_data_offline_is_a_one_line_error_naming_the_folder_and_its_files(script, dataset, folder, tmp_path):
    message = error_of(script, "--dataset", dataset, "--data-dir", tmp_path / "nowhere", "--out-dir", tmp_path / "out",
                       "--device", "cpu")
    assert message.startswith(f"error: {folder} is not in {tmp_path / 'nowhere' / folder / 'raw'} and could not be "
                              f"downloaded")
    assert "train-images-idx3-ubyte" in message and "--data-dir" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_asking_for_an_absent_device_is_a_one_line_error(name, monkeypatch):
    monkeypatch.setattr(torch.cuda if name == "cuda" else torch.backends.mps, "is_available", lambda: False)
    message = error_of("vae.py", "--device", name)
    assert message.startswith(f"error: --device {name}: ") and "--device auto" in message


def test_auto_device_is_one_that_works(capsys):
    device = utils.get_device("auto")
    assert (torch.ones(2, device=device) * 2).sum().item() == 4
    assert f"device: {device.type}" in capsys.readouterr().out


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_cpu_run_touches_no_cuda_where_cuda_is_available(script, tiny_mnist, tmp_path, monkeypatch):
    # As on a machine with a GPU: CUDA says it is there, and the scripts' use of it (which starts it) fails the
    # test. torch.accelerator is left as it is here (none): Adam's step asks it about CUDA graphs, torch's own doing.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    used = []
    for name in ["_lazy_init", "init", "get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all"]:
        monkeypatch.setattr(torch.cuda, name, lambda *args, name=name, **kwargs: used.append(name))
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY)
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 2, "--resume")
    run(script, "--out-dir", tmp_path, "--device", "cpu", "--sample", 4)
    assert used == []
    assert set(torch.load(tmp_path / CHECKPOINT[script], weights_only=True)["rng"]) == {"cpu"}


def test_atomic_keeps_the_old_file_when_writing_fails_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("the old file")
    with pytest.raises(OSError):  # the full disk's own error: nothing to add to it
        with utils.atomic(path) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path) and str(os.getpid()) in tmp  # beside it, this run's own
            open(tmp, "w").write("half a fi")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "the old file"
    assert os.listdir(tmp_path) == ["metrics.csv"]
    with utils.atomic(path) as tmp:
        open(tmp, "w").write("the new file")
    assert path.read_text() == "the new file" and os.listdir(tmp_path) == ["metrics.csv"]


@pytest.mark.parametrize("script,options", [("vae.py", []), ("vae.py", ["--conditional"]), ("gan.py", []),
                                            ("gan.py", ["--conditional"])])
def test_every_file_a_run_writes_is_written_whole_under_a_temporary_name_of_its_own(script, options, tiny_mnist,
                                                                                   tmp_path, monkeypatch):
    # Every write in --out-dir (torch.save, PIL's and matplotlib's, the CSV's) goes to a temporary file of this
    # process, then one rename gives it its name: so no stop, at any moment, leaves a file half-written. And
    # every name is one of utils.OUTPUTS, the names that a fresh run replaces.
    opened, renamed = [], []
    real_open, real_save, real_replace = open, torch.save, os.replace

    def spy_open(path, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+") and str(tmp_path) in str(path):
            opened.append(os.path.basename(path))
        return real_open(path, mode, *args, **kwargs)

    def spy_save(obj, path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr(torch, "save", spy_save)
    monkeypatch.setattr(os, "replace", lambda a, b: renamed.append((os.path.basename(a), os.path.basename(b)))
                        or real_replace(a, b))
    run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path, *TINY, "--epochs", 2, "--z-dim", 2, *options)
    run(script, "--out-dir", tmp_path, "--device", "cpu", "--sample", 4)
    monkeypatch.undo()
    assert opened and all(re.fullmatch(rf"\.tmp-{os.getpid()}-.+", name) for name in opened), opened
    assert sorted(set(opened)) == sorted({tmp for tmp, _ in renamed})
    assert all(tmp.endswith("-" + name) for tmp, name in renamed)
    files = sorted(os.listdir(tmp_path))
    assert files == sorted({name for _, name in renamed})  # nothing else, and no temporary file left
    assert all(utils.OUTPUTS.fullmatch(name) for name in files), files
    assert "generated.png" in files and ("class_grid.png" in files) == bool(options)


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_log_file_gets_one_line_per_epoch_and_a_terminal_a_progress_bar(script, tiny_mnist, tmp_path):
    # stdout and stderr captured to a file (`python gan.py > log.txt 2>&1`): no bar, one line per epoch.
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "log", *TINY, "--epochs", 3,
                 "--batch-size", 100)
    assert result.stderr == ""
    assert "\r" not in result.stdout
    assert [line[:11] for line in result.stdout.splitlines() if line.startswith("epoch")] == \
        ["epoch  1/3 ", "epoch  2/3 ", "epoch  3/3 "]
    assert len(result.stdout.splitlines()) <= 6  # the device, an epoch each, and the final lines

    terminal = Terminal()  # where tqdm draws its bar
    with contextlib.redirect_stderr(terminal), contextlib.redirect_stdout(io.StringIO()):
        importlib.import_module(script[:-3]).main(["--data-dir", str(tiny_mnist), "--out-dir", str(tmp_path / "tty"),
                                                   "--epochs", "1", "--batch-size", "100", "--device", "cpu"])
    assert "\repoch 1/1:" in terminal.getvalue() and "%|" in terminal.getvalue()
    Image.open(tmp_path / "tty" / "loss.png").verify()
