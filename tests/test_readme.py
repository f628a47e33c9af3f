"""The README's gallery: every picture it shows is in assets/, opens, and the folder stays small."""
import re

from conftest import ROOT
from PIL import Image

ASSETS = ROOT / "assets"


def pictures_in_readme():
    return re.findall(r"!\[[^\]]*\]\((assets/[^)]+)\)", (ROOT / "README.md").read_text())


def test_every_picture_the_readme_shows_is_in_assets_and_opens():
    shown = pictures_in_readme()
    assert len(shown) >= 4
    for path in shown:
        with Image.open(ROOT / path) as image:
            image.load()  # the whole file, not only its header


def test_assets_hold_only_the_pictures_shown_and_under_300_kb():
    files = sorted(p.name for p in ASSETS.iterdir())
    assert files == sorted(path.split("/", 1)[1] for path in set(pictures_in_readme()))
    assert sum(p.stat().st_size for p in ASSETS.iterdir()) < 300_000
