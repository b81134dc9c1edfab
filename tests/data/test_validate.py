"""The great-expectations gate: passes a good set, rejects each kind of bad data with a clear line."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mint_iqa.data import manifest
from mint_iqa.validate import validate_dataset
from tests.conftest import tool


def _rewrite(prepared: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    df = pd.read_parquet(prepared / manifest.MANIFEST)
    df = edit(df)
    df.to_parquet(prepared / manifest.MANIFEST, index=False)
    return df


def _failures(prepared: Path) -> str:
    report = validate_dataset(prepared, max_pixels=10_000_000)
    assert not report.success
    return "\n".join(report.failures)


def test_good_set_passes(prepared: Path) -> None:
    report = validate_dataset(prepared, max_pixels=10_000_000)
    assert report.success and report.failures == []
    assert len(report.results) > 25


def test_missing_column(prepared_copy: Path) -> None:
    _rewrite(prepared_copy, lambda df: df.drop(columns=["prompt"]))
    text = _failures(prepared_copy)
    assert "FAILED expect_column_to_exist(prompt)" in text and "column 'prompt' is missing" in text


def test_nan_label(prepared_copy: Path) -> None:
    df = _rewrite(prepared_copy, lambda df: df.assign(quality=df["quality"].mask(df.index == 3)))
    text = _failures(prepared_copy)
    assert "FAILED expect_column_values_to_not_be_null(quality): 1 unexpected" in text
    assert f"id={df['id'][3]}" in text


def test_out_of_range_label(prepared_copy: Path) -> None:
    df = _rewrite(
        prepared_copy, lambda df: df.assign(authenticity=df["authenticity"].mask(df.index == 5, 1.7))
    )
    text = _failures(prepared_copy)
    assert "FAILED expect_column_values_to_be_between(authenticity): 1 unexpected" in text
    assert f"1.7 (id={df['id'][5]})" in text


def test_duplicate_id(prepared_copy: Path) -> None:
    df = _rewrite(prepared_copy, lambda df: df.assign(id=df["id"].mask(df.index == 1, df["id"][0])))
    text = _failures(prepared_copy)
    assert (
        "FAILED expect_column_values_to_be_unique(id): 2 unexpected" in text and f"id={df['id'][0]}" in text
    )


def test_missing_file(prepared_copy: Path) -> None:
    df = pd.read_parquet(prepared_copy / manifest.MANIFEST)
    (prepared_copy / df["image"][7]).unlink()
    text = _failures(prepared_copy)
    assert "FAILED expect_column_values_to_be_null(file_check): 1 unexpected" in text
    assert f"{df['image'][7]}: no such file" in text


def test_corrupt_file(prepared_copy: Path) -> None:
    df = pd.read_parquet(prepared_copy / manifest.MANIFEST)
    path = prepared_copy / df["image"][9]
    path.write_bytes(path.read_bytes()[:300])  # truncated PNG
    (prepared_copy / df["image"][10]).write_text("not an image at all")
    text = _failures(prepared_copy)
    assert "FAILED expect_column_values_to_be_null(file_check): 2 unexpected" in text
    assert f"{df['image'][9]}: truncated or corrupt image data" in text
    assert f"{df['image'][10]}: not a recognised image format" in text


def test_path_traversal(prepared_copy: Path) -> None:
    (prepared_copy.parent / "x.png").write_bytes(
        (prepared_copy / "images" / "astronaut_0000.png").read_bytes()
    )
    _rewrite(prepared_copy, lambda df: df.assign(image=df["image"].mask(df.index == 2, "../x.png")))
    text = _failures(prepared_copy)
    assert (
        "FAILED expect_column_values_to_not_match_regex(image): 1 unexpected" in text and "'../x.png'" in text
    )
    assert "../x.png: '../x.png': path escapes the dataset root" in text  # the file exists but is refused


def test_strict_split_leakage(prepared_copy: Path) -> None:
    df = pd.read_parquet(prepared_copy / manifest.MANIFEST)
    leaking_ref = df.loc[df["split_strict"] == "test", "ref_id"].iloc[0]
    row = df.index[df["ref_id"] == leaking_ref][0]
    _rewrite(prepared_copy, lambda d: d.assign(split_strict=d["split_strict"].mask(d.index == row, "train")))
    text = _failures(prepared_copy)
    assert "FAILED expect_column_values_to_be_null(strict_leakage)" in text and leaking_ref in text


@pytest.mark.integration
def test_cli_exits_nonzero_with_one_line_per_failure(prepared_copy: Path, tmp_path: Path) -> None:
    _rewrite(
        prepared_copy,
        lambda df: df.assign(quality=df["quality"] + 5, image=df["image"].mask(df.index == 0, "/etc/passwd")),
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "prepare": {"out_dir": str(prepared_copy)},
                "validate": {"out_dir": str(tmp_path / "v"), "metrics": str(tmp_path / "v.json")},
            }
        )
    )
    proc = subprocess.run(
        [tool("mint-iqa"), "validate", "--params", str(params)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED ")]
    assert {line.split(":")[0] for line in failed} == {
        "FAILED expect_column_values_to_be_between(quality)",
        "FAILED expect_column_values_to_not_match_regex(image)",
        "FAILED expect_column_values_to_be_null(file_check)",
    }
    assert (tmp_path / "v.json").exists() and (tmp_path / "v" / "summary.md").exists()
