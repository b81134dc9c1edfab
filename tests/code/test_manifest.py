"""Manifests (strict CSV, line numbers, extra columns), output tables (control characters, exact floats) and
the HTML report's warning when no image is found; no model is loaded (a stand-in scores)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mint_iqa.config import DIMENSIONS
from mint_iqa.inference.predict import (
    OUTPUT_COLUMNS,
    escape_controls,
    images_table,
    read_manifest,
    read_table,
    score_table,
    write_table,
)
from mint_iqa.io import OK
from mint_iqa.report import write_report


class StandIn:
    """A model stand-in: scores every image 3.0 and records the prompts it was given."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def score(
        self,
        images: list[Path],
        prompt: list[str],
        batch_size: int = 32,
        scale: str = "mos",
        **_: bool,  # maps, words: not asked for here
    ) -> pd.DataFrame:
        self.prompts += prompt
        return pd.DataFrame({**{d: [3.0] * len(images) for d in DIMENSIONS}, "status": [OK] * len(images)})

    def assess(
        self,
        images: list[Path],
        prompts: list[str],
        batch_size: int = 32,
        scale: str = "mos",
        **_: bool,  # maps, words: not asked for here
    ) -> pd.DataFrame:
        from mint_iqa.inference.assess import EXPLANATION_COLUMNS

        table = self.score(images, prompts, batch_size, scale)
        return table.assign(**{c: "fine" for c in EXPLANATION_COLUMNS})


def _manifest(tmp_path: Path, text: str | bytes, images: tuple[str, ...] = ("a.png", "b.png")) -> Path:
    for name in images:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6), (120, 30, 200)).save(tmp_path / name)
    path = tmp_path / "m.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _error(path: Path) -> str:
    with pytest.raises(ValueError) as info:
        read_manifest(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(str(path)), message
    return message


# -- strict parsing -----------------------------------------------------------------------------------


def test_ragged_row_names_the_manifest_and_its_physical_line(tmp_path: Path) -> None:
    """Before: pandas took `extra` as the image. The quoted newline and the blank line count as lines."""
    text = 'image,prompt\na.png,"a board\nover two lines"\n\nb.png,a board,extra,fields\n'
    message = _error(_manifest(tmp_path, text))
    assert message == f"{tmp_path / 'm.csv'}: line 5 has 4 fields, the header has 2"


def test_short_row_and_row_after_the_header(tmp_path: Path) -> None:
    assert _error(_manifest(tmp_path, "image,prompt\na.png\n")).endswith(
        "line 2 has 1 field, the header has 2"
    )
    assert _error(_manifest(tmp_path, "image,prompt\r\na.png,x\r\nb.png,y,z\r\n")).endswith(
        "line 3 has 3 fields, the header has 2"
    )


def test_unterminated_quote_names_the_line_it_starts_on(tmp_path: Path) -> None:
    message = _error(_manifest(tmp_path, 'image,prompt\na.png,x\nb.png,"never closed\nc.png,y\n'))
    assert "line 3: malformed CSV" in message


def test_quoted_commas_quotes_and_newlines_still_work(tmp_path: Path) -> None:
    text = '\ufeffimage,prompt\r\n"a.png","a cat, a ""dog""\r\nand a bird"\r\n\r\n   \r\nsub/b.png,plain\r\n'
    df = read_manifest(_manifest(tmp_path, text, ("a.png", "sub/b.png")))
    assert list(df["prompt"]) == ['a cat, a "dog"\r\nand a bird', "plain"]
    assert list(df["status"]) == [OK, OK] and df["path"][1] == (tmp_path / "sub" / "b.png").resolve()


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "not a readable CSV"),
        (b"\n\n", "not a readable CSV"),
        (b"path,text\na.png,x\n", "missing column(s) ['image', 'prompt']"),
        ("image,prompt\na.png,caf\xe9\n".encode("latin-1"), "not UTF-8 text (line 2, byte 22)"),
        (b"\xef\xbb\xbfimage,prompt\na.png,caf\xe9\n", "not UTF-8 text (line 2, byte 25)"),
        ("image,prompt\na.png,x\n".encode("utf-16"), "not UTF-8 text (line 1, byte 0)"),
        (b"image,prompt,image\na.png,x,y\n", "column 'image' appears twice"),
        (
            b"image,prompt,quality,input_quality\na.png,x,1,2\n",
            "columns 'quality' and 'input_quality' would both be 'input_quality'",
        ),
    ],
)
def test_bad_manifests_fail_whole_with_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    assert reason in _error(_manifest(tmp_path, content))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")


def test_row_statuses_confinement_duplicates_and_nul(tmp_path: Path) -> None:
    text = 'image,prompt\na.png,x\n../out.png,x\n/etc/hostname,x\na.png,x\n"b\x00.png",x\n,x\n'
    status = list(read_manifest(_manifest(tmp_path, text))["status"])
    assert status[0] == OK and "escapes the dataset root" in status[1] and "must be relative" in status[2]
    assert status[3] == "duplicate of row 1 (same image and prompt)" and "NUL character" in status[4]
    assert "must be relative" in status[5] and all(len(s.splitlines()) == 1 for s in status)


# -- extra columns --------------------------------------------------------------------------------------


def test_extra_columns_are_carried_after_the_standard_ones(tmp_path: Path) -> None:
    text = "id,image,prompt,notes\n7,a.png,a cat,first\n008,missing.png,a dog,\n"
    table = read_manifest(_manifest(tmp_path, text))
    assert list(table.columns) == ["image", "prompt", "id", "notes", "path", "status"]
    result = score_table(StandIn(), table)
    assert list(result.columns) == [*OUTPUT_COLUMNS, "id", "notes"]
    assert list(result["id"]) == ["7", "008"] and list(result["notes"]) == ["first", ""]  # text, as written
    explained = score_table(StandIn(), table, explain=True)
    assert list(explained.columns[-2:]) == ["id", "notes"] and explained.columns[6].startswith("explanation_")


def test_extra_columns_named_like_outputs_are_renamed(tmp_path: Path) -> None:
    text = "image,prompt,quality,status,path,explanation_quality\na.png,a cat,low,todo,x/y,meh\n"
    table = read_manifest(_manifest(tmp_path, text))
    assert table["status"][0] == OK and table["path"][0] == (tmp_path / "a.png").resolve()
    result = score_table(StandIn(), table)
    assert result["quality"][0] == 3.0 and result["status"][0] == OK
    assert result.iloc[0][
        ["input_quality", "input_status", "input_path", "input_explanation_quality"]
    ].tolist() == [
        "low",
        "todo",
        "x/y",
        "meh",
    ]


def test_image_lists_have_no_extra_columns(tmp_path: Path) -> None:
    _manifest(tmp_path, "image,prompt\n")
    result = score_table(StandIn(), images_table([tmp_path / "a.png"], "a cat"))
    assert list(result.columns) == OUTPUT_COLUMNS


# -- written outputs ------------------------------------------------------------------------------------

NASTY = "red \x1b[31mALERT\x1b[0m\x00 bell\x07 del\x7f csi\x9b tab\tnew\nline"


def test_control_characters_are_escaped_in_csv_and_json_but_not_for_the_model(tmp_path: Path) -> None:
    text = f'image,prompt,note\x1b\na.png,"{NASTY}","\x1b]0;title\x07"\n'
    model = StandIn()
    result = score_table(model, read_manifest(_manifest(tmp_path, text)))
    assert model.prompts == [NASTY] and result["prompt"][0] == NASTY  # the model and the API see the raw text
    write_table(result, tmp_path / "out.csv")
    raw = (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert not any(c in raw for c in "\x00\x07\x1b\x7f\x9b")
    assert r"red \x1b[31mALERT\x1b[0m\x00 bell\x07 del\x7f csi\x9b tab" + "\tnew\nline" in raw
    assert r"\x1b]0;title\x07" in raw and raw.startswith("image,prompt,quality,") and r",note\x1b" in raw
    write_table(result, tmp_path / "out.json")
    raw = (tmp_path / "out.json").read_text(encoding="utf-8")
    assert not any(c in raw for c in "\x00\x07\x1b\x7f\x9b")
    assert json.loads(raw)[0]["prompt"] == NASTY  # JSON escapes are lossless
    write_table(result, tmp_path / "out.parquet")
    assert pd.read_parquet(tmp_path / "out.parquet")["prompt"][0] == NASTY


def test_escape_controls_keeps_text_and_whitespace() -> None:
    assert escape_controls("caf\xe9 \u2014 ok\t\r\n") == "caf\xe9 \u2014 ok\t\r\n"
    assert escape_controls("\x00\x1f\x85") == r"\x00\x1f\x85"


def test_floats_round_trip_exactly_in_csv_and_json(tmp_path: Path) -> None:
    """Before: JSON went through df.to_json (10 significant digits), so the two rows printed equal."""
    values = [3.123456789012, 3.123456789013, 1 / 3, 4.999999999999999]
    df = pd.DataFrame({"image": list("abcd"), "prompt": "p", **{d: values for d in DIMENSIONS}, "status": OK})
    df.loc[3, "status"], df.loc[3, "quality"] = "broken", np.nan
    for suffix in (".csv", ".json", ".parquet"):
        back = read_table(_written(df, tmp_path / f"t{suffix}"))
        assert back["authenticity"].tolist() == values, suffix
        assert back["quality"].tolist()[:3] == values[:3] and np.isnan(back["quality"][3]), suffix
    assert json.loads((tmp_path / "t.json").read_text())[3]["quality"] is None


def _written(df: pd.DataFrame, path: Path) -> Path:
    write_table(df, path)
    return path


# -- report -------------------------------------------------------------------------------------------


def _results(tmp_path: Path, images: list[str], prompt: str = "a cat") -> Path:
    n = len(images)
    df = pd.DataFrame({"image": images, "prompt": prompt, **{d: [3.5] * n for d in DIMENSIONS}, "status": OK})
    return _written(df, tmp_path / "scores.csv")


def test_report_warns_once_when_no_image_is_found(tmp_path: Path) -> None:
    results = _results(tmp_path, [f"gone/{i}.png" for i in range(12)])
    lines: list[str] = []
    info = write_report(results, tmp_path / "r.html", warn=lines.append)
    assert info["warnings"] == lines and len(lines) == 1
    assert lines[0].startswith("warning: no image found for any of the 12 scored rows (looked under ")
    assert str(tmp_path) in lines[0] and "without thumbnails" in lines[0]


def test_report_warning_goes_to_stderr_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_report(_results(tmp_path, ["gone.png"]), tmp_path / "r.html", images_root=tmp_path / "imgs")
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and f"no image found for the 1 scored row (looked under {tmp_path / 'imgs'})" in err
    )


def test_report_is_quiet_when_some_image_is_found(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6)).save(tmp_path / "here.png")
    lines: list[str] = []
    info = write_report(_results(tmp_path, ["here.png", "gone.png"]), tmp_path / "r.html", warn=lines.append)
    assert lines == [] and info["warnings"] == []
    assert (tmp_path / "r.html").read_text().count('src="data:image/jpeg;base64,') == 1


def test_report_escapes_control_characters(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6)).save(tmp_path / "here.png")
    df = pd.DataFrame(
        {
            "image": ["here.png", "bad\x1b.png"],
            "prompt": [NASTY, "x"],
            "quality": [3.0, np.nan],
            "authenticity": [3.0, np.nan],
            "correspondence": [3.0, np.nan],
            "status": [OK, "bad\x1b.png: \x00 broken"],
        }
    )
    df.to_parquet(tmp_path / "raw.parquet")  # Parquet keeps the raw characters
    write_report(tmp_path / "raw.parquet", tmp_path / "r.html", warn=lambda line: None)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert not any(c in page for c in "\x00\x07\x1b\x7f\x9b")
    assert r"red \x1b[31mALERT" in page and r"bad\x1b.png: \x00 broken" in page
