"""Batch prediction for `mint-iqa score`: inputs from image paths/folders or a manifest, one output row per
input, in order, written atomically as CSV, JSON or Parquet.

* `IMAGES...` with `--prompt P`: files, or folders (their image files, sorted, not recursive).
* `--manifest M.csv` with columns `image,prompt`: image paths are relative to M's folder and may not
  leave it; rows are numbered from 1 (the first row after the header).

Manifest rules: UTF-8 text (a BOM is accepted), parsed strictly as CSV (quoted fields may hold commas,
quotes and newlines; blank lines are skipped). A record whose field count differs from the header's, or
malformed quoting, fails the whole manifest with the physical line it starts on (the header is line 1),
e.g. `m.csv: line 3 has 4 fields, the header has 2`. Columns besides `image` and `prompt` (say `id`,
`notes`) are carried, as text, into the output after the standard columns, so results can be joined back;
one named like an output column (`quality`, `status`, `path`, `explanation_*`...) is renamed `input_<name>`.

Output columns: `image, prompt, quality, authenticity, correspondence, status` (+ `explanation_<dim>` with
`--explain`, + `maps`, the PNG of the row's damage maps, with `--maps DIR`, + `words` and `unsupported`
with `--words`), then the manifest's extra columns. A row that cannot be scored keeps its place with the
reason in `status` (missing or unreadable file, not an image, too many pixels, empty or over-long prompt,
path outside the manifest's folder, duplicate row); the others are scored. An existing output is never
replaced without `force`. In CSV output, control characters (C0 except tab, newline and carriage return;
DEL; C1) are written as visible `\\xNN` escapes (JSON escapes them as `\\u00NN`, Parquet keeps them), so a
prompt cannot inject terminal escape sequences or NULs into a file someone will `cat`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mint_iqa.config import BATCH_SIZE, DIMENSIONS, EXPLANATION_COLUMNS
from mint_iqa.io import IMAGE_SUFFIXES, OK, atomic_write, confined
from mint_iqa.maps import map_names, write_maps

OUTPUT_COLUMNS = ["image", "prompt", *DIMENSIONS, "status"]
FORMATS = (".csv", ".json", ".parquet")
INPUT_COLUMNS = ("image", "prompt", "path", "status")  # a manifest table's own columns; any others are extras
RESERVED_PREFIX = "input_"  # an extra column named like an output column gets this prefix
CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0 but tab, LF, CR; DEL; C1
_JSON_RAW_CONTROLS = re.compile(r"[\x7f-\x9f]")  # the ones json.dump leaves raw


def read_manifest(path: Path) -> pd.DataFrame:
    """The manifest's rows: `image`, `prompt`, its extra columns (text, see the module docstring), `path`
    (resolved, or None) and `status` (OK or why the row is unusable)."""
    header, records = _read_csv(path)
    header = _column_names(path, header)
    missing = {"image", "prompt"} - set(header)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected image,prompt")
    df = pd.DataFrame(records, columns=header, dtype=object)
    extras = [c for c in header if c not in ("image", "prompt")]
    root = path.resolve().parent
    paths: list[Path | None] = []
    status: list[str] = []
    first: dict[tuple[str, str], int] = {}
    for row, (image, prompt) in enumerate(zip(df["image"], df["prompt"]), start=1):
        resolved, reason = _resolve(root, image)
        paths.append(resolved)
        status.append(reason)
        if (image, prompt) in first:
            status[-1] = f"duplicate of row {first[(image, prompt)]} (same image and prompt)"
        first.setdefault((image, prompt), row)
    return df[["image", "prompt", *extras]].assign(path=paths, status=status)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the data records of a UTF-8 CSV file; blank lines skipped; every record must have as
    many fields as the header (ValueError naming the physical line the record starts on)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    data = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = bom + exc.start  # the offset in the file
        line = data.count(b"\n", 0, at) + 1
        raise ValueError(
            f"{path}: not UTF-8 text (line {line}, byte {at}); save the manifest as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[list[str]] = []
    line = 1  # the physical line the next record starts on
    while True:
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            raise ValueError(f"{path}: line {line}: malformed CSV ({exc})") from None
        if fields is None:
            break
        if not _blank(fields):
            if header is None:
                header = fields
            elif len(fields) != len(header):
                raise ValueError(
                    f"{path}: line {line} has {_count(len(fields))}, the header has {len(header)}"
                )
            else:
                records.append(fields)
        line = reader.line_num + 1
    if header is None:
        raise ValueError(
            f"{path}: not a readable CSV (the file is empty; expected a header line image,prompt)"
        )
    return header, records


def _blank(fields: list[str]) -> bool:
    """An empty line, or one of only spaces and tabs."""
    return not fields or (len(fields) == 1 and not fields[0].strip(" \t"))


def _count(n: int) -> str:
    return f"{n} field" if n == 1 else f"{n} fields"


def _column_names(path: Path, header: list[str]) -> list[str]:
    """Header names stripped of surrounding spaces; unnamed columns become `column_<n>` (1-based), extras
    named like an output column get the `input_` prefix; a name given twice is an error."""
    reserved = {*OUTPUT_COLUMNS, "path"} - {"image", "prompt"}
    given: dict[str, str] = {}  # the name used -> the name in the header
    for i, raw in enumerate(header, start=1):
        original = raw.strip() or f"column_{i}"
        name = (
            RESERVED_PREFIX + original
            if original in reserved or original.startswith("explanation_")
            else original
        )
        if name in given:
            clash = (
                f"column {original!r} appears twice in the header"
                if given[name] == original
                else f"columns {given[name]!r} and {original!r} would both be {name!r} "
                f"(a column named like an output column gets the prefix {RESERVED_PREFIX})"
            )
            raise ValueError(f"{path}: {clash}")
        given[name] = original
    return list(given)


def _resolve(root: Path, image: str) -> tuple[Path | None, str]:
    """The row's file under `root` and OK, or None and why the path cannot be used."""
    if "\x00" in image:
        return None, f"{image!r}: path contains a NUL character"
    try:
        return confined(root, image), OK
    except (ValueError, OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        return None, str(exc).splitlines()[0] if str(exc) else f"{image!r}: unusable path"


def images_table(images: list[Path], prompt: str) -> pd.DataFrame:
    """Rows for image files and folders given on the command line, all with one prompt."""
    rows: list[dict[str, Any]] = []
    for item in images:
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            rows += [{"image": str(f), "prompt": prompt, "path": f, "status": OK} for f in files]
            if not files:
                rows.append(
                    {
                        "image": str(item),
                        "prompt": prompt,
                        "path": None,
                        "status": f"{item}: folder has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})",
                    }
                )
        else:
            rows.append({"image": str(item), "prompt": prompt, "path": item, "status": OK})
    return pd.DataFrame(rows, columns=["image", "prompt", "path", "status"])


def check_output(out: Path, force: bool) -> None:
    """Refuse before any work: unknown format, missing folder, or an existing file without `force`."""
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"{out}: output must end in {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: output folder does not exist")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: exists; pass --force to overwrite")


def write_table(df: pd.DataFrame, out: Path) -> None:
    """CSV, JSON (a list of records) or Parquet by suffix; the file appears whole or not at all. Floats are
    written exactly (shortest round-trip form), missing values as empty (CSV) or null (JSON); control
    characters in text are escaped in CSV and JSON, kept in Parquet (see the module docstring)."""
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        with atomic_write(out, "wb") as fh:
            df.to_parquet(fh, index=False)
    elif suffix == ".json":
        text = json.dumps(_records(df), indent=1, ensure_ascii=False, default=_json_default)
        with atomic_write(out, "w", encoding="utf-8") as fh:
            fh.write(_JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m[0]):04x}", text))
    else:
        with atomic_write(out, "w", encoding="utf-8", newline="") as fh:
            _escaped(df).to_csv(fh, index=False)


def escape_controls(text: str) -> str:
    """`text` with each control character (see CONTROLS) written as a visible `\\xNN` escape."""
    return CONTROLS.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def _escaped(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` whose text cells and column names have their control characters escaped."""
    out = df.copy()
    for i, column in enumerate(df.columns):
        if df[column].dtype == object or pd.api.types.is_string_dtype(df[column]):
            out.isetitem(i, df[column].map(lambda v: escape_controls(v) if isinstance(v, str) else v))
    out.columns = [escape_controls(c) if isinstance(c, str) else c for c in df.columns]
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts: native Python values, NaN/None/NA (and infinities) as None."""
    return [{str(k): _json_value(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def read_table(path: Path) -> pd.DataFrame:
    """A table written by `write_table`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".json":
            return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
        return pd.read_csv(path, keep_default_na=False, na_values=[""], encoding="utf-8")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable results table ({str(exc).splitlines()[0]})") from None


def score_table(
    model: Any,
    table: pd.DataFrame,
    explain: bool = False,
    scale: str = "mos",
    batch_size: int = BATCH_SIZE,
    maps: Path | None = None,
    words: bool = False,
) -> pd.DataFrame:
    """Score (and explain) the usable rows of `table` (columns image, prompt, path, status, and any extra
    columns) with a loaded `mint_iqa.Model`; returns the output table, one row per input row, in order, the
    extra columns last. With `maps`, each scored row's damage maps are written there (`mint_iqa.maps`)
    and column `maps` names the PNG; with `words`, columns `words` (`word=support; ...`) and `unsupported`
    (the prompt's subject, when it is not recognised in the image)."""
    extra = [
        *(EXPLANATION_COLUMNS if explain else []),
        *(["maps"] if maps is not None else []),
        *(["words", "unsupported"] if words else []),
    ]
    carried = [c for c in table.columns if c not in INPUT_COLUMNS]
    result = pd.DataFrame(
        {
            "image": table["image"],
            "prompt": table["prompt"],
            **{d: np.nan for d in DIMENSIONS},
            "status": table["status"],
            **{c: "" for c in extra},
        },
        index=table.index,
    )
    todo = table.index[table["status"] == OK]
    if len(todo):
        images, prompts = list(table.loc[todo, "path"]), list(table.loc[todo, "prompt"])
        run = model.assess if explain else model.score
        scores = run(images, prompts, batch_size=batch_size, scale=scale, maps=maps is not None, words=words)
        if words:
            from mint_iqa.models.words import unsupported  # torch: loaded by then, never for `report`

            found = [pairs or [] for pairs in scores["words"]]
            scores["unsupported"] = ["; ".join(unsupported(p, t)) for p, t in zip(found, prompts)]
            scores["words"] = ["; ".join(f"{w}={v:.3f}" for w, v in pairs) for pairs in found]
        if maps is not None:
            scores["maps"] = _write_maps(maps, scores, images, map_names(list(table.loc[todo, "image"])))
        columns = [*DIMENSIONS, "status", *extra]
        result.loc[todo, columns] = scores[columns].to_numpy()
    result = result[[*OUTPUT_COLUMNS, *extra]].reset_index(drop=True)
    return result.assign(
        **{(RESERVED_PREFIX + c if c in result.columns else c): table[c].to_numpy() for c in carried}
    )


def _write_maps(folder: Path, scores: pd.DataFrame, images: list[Any], names: list[str]) -> list[str]:
    """Each scored row's maps under `folder`; the PNG's path per row ('' for failed rows)."""
    written = []
    for (_, row), image, name in zip(scores.iterrows(), images, names):
        ok = row["status"] == OK
        png = write_maps(folder, name, image, row["quality_map"], row["authenticity_map"]) if ok else ""
        written.append(str(png))
    return written
