"""utils.py: the data, the batch loader, the device, and what a run prints."""
import contextlib
import importlib
import io

import pytest
import torch
from conftest import SCRIPTS, TINY, run
from PIL import Image

import utils

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CPU = torch.device("cpu")


def test_load_data_reads_the_raw_files_into_a_shuffled_training_loader_and_an_ordered_test_one(tiny_mnist):
    loader, test_loader, classes = utils.load_data("mnist", tiny_mnist, 64, CPU)
    assert loader.images.shape == (300, 28, 28) and loader.images.dtype == torch.uint8
    assert loader.labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert torch.equal(loader.images[:, 0, 0].long(), loader.labels * 25)
    assert classes == [str(digit) for digit in range(10)]
    assert loader.batch_size == 64 and loader.shuffle and test_loader.batch_size == 1000 and not test_loader.shuffle
    assert test_loader.images.shape == (100, 28, 28)
    assert torch.equal(next(iter(test_loader))[1], test_loader.labels)
    fashion, _, classes = utils.load_data("fashion-mnist", tiny_mnist, 64, CPU)  # from its own folder
    assert fashion.images.shape == (200, 28, 28) and classes == FASHION_CLASSES

    batches = list(loader)  # every image once, as floats in [0, 1]
    assert len(loader) == len(batches) == 5  # 4 full batches of 64 and one of 44
    assert [len(x) for x, _ in batches] == [64, 64, 64, 64, 44]
    x, y = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    assert x.shape == (300, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0, 0, 0] * 255, y.float() * 25)  # images stay with their labels
    expected = loader.images.unsqueeze(1).float() / 255
    assert sorted(map(tuple, x.flatten(1).tolist())) == sorted(map(tuple, expected.flatten(1).tolist()))
    torch.manual_seed(0)  # shuffled anew each epoch, in an order that the seed repeats
    first, second = [torch.cat([y for _, y in loader]) for _ in range(2)]
    torch.manual_seed(0)
    assert not torch.equal(first, second) and torch.equal(torch.cat([y for _, y in loader]), first)


def test_auto_device_is_one_that_works(capsys):
    device = utils.get_device("auto")
    assert (torch.ones(2, device=device) * 2).sum().item() == 4
    assert f"device: {device.type}" in capsys.readouterr().out


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
    assert ("final test -log p(x) <= " in result.stdout) == (script == "vae.py")  # the VAE's bound, by default

    terminal = Terminal()  # where tqdm draws its bar
    with contextlib.redirect_stderr(terminal), contextlib.redirect_stdout(io.StringIO()):
        importlib.import_module(script[:-3]).main(["--data-dir", str(tiny_mnist), "--out-dir", str(tmp_path / "tty"),
                                                   "--epochs", "1", "--batch-size", "100", "--device", "cpu"])
    assert "\repoch 1/1:" in terminal.getvalue() and "%|" in terminal.getvalue()
    Image.open(tmp_path / "tty" / "loss.png").verify()
