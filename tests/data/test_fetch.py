"""Raw data materialise to the same bytes everywhere, so data.dvc never changes on a fresh clone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from mint_iqa.data.references import REFERENCES, fetch, load_references
from mint_iqa.io import sha256_file
from tests.conftest import tool

ROOT = Path(__file__).resolve().parents[2]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_builds_are_byte_identical(raw_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "data"
    fetch(other)
    assert _hashes(other) == _hashes(raw_dir)
    assert len(_hashes(other)) == len(REFERENCES) + 1


@pytest.mark.integration
def test_dvc_hash_matches_committed_data_dvc(raw_dir: Path, tmp_path: Path) -> None:
    """`dvc add` of a fresh build in a fresh repo gives exactly the md5 recorded in data.dvc."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    run = lambda *cmd: subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run(tool("dvc"), "init", "-q")
    fetch(repo / "data")
    run(tool("dvc"), "add", "data")
    built = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]
    committed = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]
    assert built["md5"] == committed["md5"]
    assert built["nfiles"] == committed["nfiles"]


def test_fetch_never_overwrites_different_data(tmp_path: Path) -> None:
    target = tmp_path / "data"
    fetch(target)
    victim = target / REFERENCES[0].file
    victim.write_bytes(b"someone's own file")
    with pytest.raises(FileExistsError, match=REFERENCES[0].id):
        fetch(target)
    assert victim.read_bytes() == b"someone's own file"
    fetch(target, force=True)
    assert victim.read_bytes() != b"someone's own file"


def test_references_load_with_captions(raw_dir: Path) -> None:
    refs = load_references(raw_dir)
    assert [r.id for r, _ in refs] == [r.id for r in REFERENCES]
    for ref, pixels in refs:
        assert pixels.ndim == 3 and pixels.shape[2] == 3 and min(pixels.shape[:2]) >= 256
        assert ref.subject and ref.scene and ref.licence


def test_the_catalogue_names_pinned_sources_and_licences() -> None:
    """Every photograph has a unique id, a licence and an attribution; Debian sources pin an exact version,
    so every machine downloads the same bytes."""
    from mint_iqa.data.references import DEBIAN

    assert len({r.id for r in REFERENCES}) == len(REFERENCES) >= 50
    for ref in REFERENCES:
        assert ref.licence and ref.attribution and ref.subject, ref.id
        if ref.package.startswith(DEBIAN):
            name, _, version = ref.package.removeprefix(DEBIAN).partition("=")
            assert name and version, ref.id


def test_large_photographs_are_box_reduced_to_the_stored_size(raw_dir: Path) -> None:
    from mint_iqa.data.references import MAX_SIDE

    for ref, pixels in load_references(raw_dir):
        assert max(pixels.shape[:2]) <= MAX_SIDE, ref.id


def test_a_debian_package_that_cannot_be_downloaded_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `apt-get download` of a version that does not exist: one clear error naming the package."""
    from mint_iqa.data import references

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MINT_IQA_CACHE", raising=False)
    with pytest.raises(
        FileNotFoundError, match=r"debian:mate-backgrounds=0\.0\.0-0: apt-get download failed"
    ):
        references._debian_files("debian:mate-backgrounds=0.0.0-0", frozenset({"x.jpg"}))
    assert not list((tmp_path / "mint-iqa" / "debs").glob("*.deb"))
