"""The README and docs/results.md: every picture and link resolves, and the gallery stays small."""
import re

import pytest
from conftest import ROOT
from PIL import Image

ASSETS = ROOT / "assets"
PAGES = [ROOT / "README.md", ROOT / "docs" / "results.md"]


def pictures_in_readme():
    return re.findall(r"!\[[^\]]*\]\((assets/[^)]+)\)", (ROOT / "README.md").read_text())


def test_every_picture_the_readme_shows_opens_and_assets_hold_only_those_under_300_kb():
    shown = pictures_in_readme()
    assert len(shown) >= 4
    for path in shown:
        with Image.open(ROOT / path) as image:
            image.load()  # the whole file, not only its header
    assert sorted(p.name for p in ASSETS.iterdir()) == sorted(path.split("/", 1)[1] for path in set(shown))
    assert sum(p.stat().st_size for p in ASSETS.iterdir()) < 300_000


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_picture_resolves(page):
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert relative
    for target in relative:
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which is not there"
