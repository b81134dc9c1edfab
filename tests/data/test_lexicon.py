"""The committed word lexicon is what WordNet (the pinned Debian package) and timm's ImageNet list give."""

from __future__ import annotations

from pathlib import Path

import pytest

from mint_iqa.data.lexicon import write_lexicon
from mint_iqa.models.words import LEXICON

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_lexicon_rebuilds_byte_identical(tmp_path: Path) -> None:
    built = write_lexicon(tmp_path / "lexicon.json")
    assert built.read_bytes() == LEXICON.read_bytes()
