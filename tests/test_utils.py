"""utils.py: data reading, the batch loader, devices, atomic saving and what a run prints."""
import contextlib
import importlib
import io

import pytest
import torch
from conftest import TINY, error_of, run

import utils

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def test_load_dataset_reads_the_raw_idx_files(tiny_mnist):
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
    assert not torch.equal(images, utils.load_dataset("mnist", tiny_mnist)[0][0])
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
    assert x.min() >= 0 and x.max() <= 1
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


def test_missing_mnist_is_a_one_line_error_naming_the_folder(tmp_path):
    message = error_of("vae.py", "--data-dir", tmp_path / "nowhere", "--out-dir", tmp_path / "out", "--device", "cpu")
    assert message.startswith("error: MNIST is not in ")
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message
    assert not (tmp_path / "out").exists()


def test_missing_fashion_mnist_names_its_own_folder(tmp_path):
    message = error_of("gan.py", "--dataset", "fashion-mnist", "--data-dir", tmp_path, "--out-dir", tmp_path / "out",
                       "--device", "cpu")
    assert message.startswith(f"error: FashionMNIST is not in {tmp_path / 'FashionMNIST' / 'raw'}")


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_asking_for_an_absent_device_is_a_clear_error(name, capsys):
    if name == "cuda" and torch.cuda.is_available() or name == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"this machine has {name}")
    with pytest.raises(SystemExit) as e:
        utils.get_device(name)
    assert f"--device {name}" in str(e.value) and str(e.value).startswith("error: ")


def test_auto_device_is_one_that_works(capsys):
    device = utils.get_device("auto")
    assert (torch.ones(2, device=device) * 2).sum().item() == 4
    assert f"device: {device.type}" in capsys.readouterr().out


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "model.pt"
    utils.save_checkpoint({"w": torch.ones(3)}, path)
    with pytest.raises(SystemExit, match="could not be written"):  # one line, not a traceback
        with utils.atomic_path(path) as tmp:
            open(tmp, "wb").write(b"half a checkpoint")
            raise OSError(28, "No space left on device")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("script", ["vae.py", "gan.py"])
def test_a_log_file_gets_one_line_per_epoch_and_a_terminal_a_progress_bar(script, tiny_mnist, tmp_path):
    # stdout and stderr captured to a file (`python gan.py > log.txt 2>&1`): no bar, one line per epoch.
    result = run(script, "--data-dir", tiny_mnist, "--out-dir", tmp_path / "log", *TINY, "--epochs", 3,
                 "--batch-size", 10)
    assert result.stderr == ""
    assert "\r" not in result.stdout
    assert [line[:11] for line in result.stdout.splitlines() if line.startswith("epoch")] == \
        ["epoch  1/3 ", "epoch  2/3 ", "epoch  3/3 "]
    assert len(result.stdout.splitlines()) <= 7  # the device, an epoch each, and the final lines

    terminal = Terminal()  # where tqdm draws its bar
    with contextlib.redirect_stderr(terminal), contextlib.redirect_stdout(io.StringIO()):
        importlib.import_module(script[:-3]).main(["--data-dir", str(tiny_mnist), "--out-dir", str(tmp_path / "tty"),
                                                   "--epochs", "1", "--batch-size", "10", "--device", "cpu"])
    assert "\repoch 1/1:" in terminal.getvalue() and "%|" in terminal.getvalue()
