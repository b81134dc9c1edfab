"""`mint-iqa report`: one self-contained HTML file from a results table of `mint-iqa score`.

Thumbnails are embedded (base64 JPEG), so the file can be mailed or attached to a ticket. Rows are
rendered here (the page reads without JavaScript); a small script adds sorting by any dimension, a
minimum-score filter, a text filter and, for rows scored with `--maps`, buttons that lay the quality
or authenticity damage map over the thumbnail (`report.html#view=authenticity` opens on that map).
Above the table: one histogram per dimension (inline SVG); below it: the items that could not be
scored, with the reason. Text from the table is HTML-escaped, and its control characters are shown as
`\\xNN` escapes (as in CSV output). When none of the scored rows' images can be found, `write_report`
says so on stderr (one line): the report then has no thumbnails.
"""

from __future__ import annotations

import base64
import html
import io
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mint_iqa.config import DIMENSIONS
from mint_iqa.inference.predict import escape_controls, read_table
from mint_iqa.io import DEFAULT_MAX_PIXELS, ImageError, load_image, write_text
from mint_iqa.maps import overlay

THUMB = 112
COLOURS = {"quality": "#3b82f6", "authenticity": "#10b981", "correspondence": "#f59e0b"}


def _thumbnail(path: Path | None, maps: Path | None = None) -> dict[str, str]:
    """Data URLs of the image's thumbnail (`image`) and, given its maps' `.npz` (`mint-iqa score --maps`),
    of the thumbnail under each damage map (`quality`, `authenticity`); empty when it cannot be read."""
    if path is None:
        return {}
    try:
        img = load_image(path, max_pixels=DEFAULT_MAX_PIXELS)
    except ImageError:
        return {}
    img.thumbnail((THUMB, THUMB))
    views = {"image": img}
    if maps is not None:
        try:
            with np.load(maps, allow_pickle=False) as arrays:
                views |= {k: overlay(img, arrays[k]) for k in ("quality", "authenticity")}
        except (OSError, ValueError, KeyError):
            pass  # no usable maps: the row shows the image alone
    return {k: _data_url(v) for k, v in views.items()}


def _data_url(img: Any) -> str:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _picture(name: str, views: dict[str, str]) -> str:
    """The row's thumbnail, with buttons that lay its damage maps over it when it has them."""
    if not views:
        return '<div class="noimg">no preview</div>'
    data = " ".join(f'data-{k}="{v}"' for k, v in views.items())
    img = f'<img src="{views["image"]}" alt="{name}" {data}>'
    if len(views) == 1:
        return img
    buttons = "".join(f'<button type="button" data-view="{k}">{k[:4]}</button>' for k in views)
    return f'{img}<div class="views">{buttons}</div>'


def _find(image: str, roots: list[Path]) -> Path | None:
    for root in roots:
        candidate = Path(image) if Path(image).is_absolute() else root / image
        if candidate.is_file():
            return candidate
    return None


def _text(value: Any) -> str:
    """Table text as HTML: escaped, control characters shown as `\\xNN`."""
    return html.escape(escape_controls(str(value)))


def _histogram(values: np.ndarray, lo: float, hi: float, colour: str, bins: int = 16) -> str:
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = max(int(counts.max()) if counts.size else 0, 1)
    width, height = 240, 80
    bars = "".join(
        f'<rect x="{i * width / bins:.1f}" y="{height - c / top * height:.1f}" '
        f'width="{width / bins - 1:.1f}" height="{c / top * height:.1f}" fill="{colour}">'
        f"<title>{edges[i]:.2f}-{edges[i + 1]:.2f}: {c}</title></rect>"
        for i, c in enumerate(counts)
    )
    return (
        f'<svg width="{width}" height="{height + 14}" role="img">{bars}'
        f'<text x="0" y="{height + 12}" font-size="10">{lo:g}</text>'
        f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">{hi:g}</text></svg>'
    )


def _bar(dim: str, value: float, lo: float, hi: float) -> str:
    if math.isnan(value):
        return f'<div class="score"><span class="label">{dim[:4]}</span><span class="num">-</span></div>'
    pct = 100.0 * (value - lo) / (hi - lo or 1.0)
    return (
        f'<div class="score"><span class="label">{dim[:4]}</span><span class="track"><span class="fill" '
        f'style="width:{min(max(pct, 0), 100):.1f}%;background:{COLOURS[dim]}"></span></span>'
        f'<span class="num">{value:.2f}</span></div>'
    )


def _row(
    row: pd.Series, name: str, prompt: str, roots: list[Path], explained: list[str], lo: float, hi: float
) -> str:
    """One scored row: thumbnail (and map overlays), name and prompt, score bars, explanations."""
    values = {d: float(row[d]) for d in DIMENSIONS}
    png = row.get("maps")  # written by `score --maps`; empty (NaN once read back) for rows without
    maps = _find(str(Path(png).with_suffix(".npz")), roots) if isinstance(png, str) and png else None
    img = _picture(name, _thumbnail(_find(str(row["image"]), roots), maps))
    words = "".join(
        f"<p><b>{c.removeprefix('explanation_')}</b>: {_text(row[c])}</p>"
        for c in explained
        if str(row[c]).strip() and str(row[c]) != "nan"
    )
    found, said = row.get("words"), ""  # `score --words`: "word=support; ...", the subject not recognised
    if isinstance(found, str) and found:
        missing = row.get("unsupported")
        gone = f" · not recognised: <b>{_text(missing)}</b>" if isinstance(missing, str) and missing else ""
        said = f'<div class="words">words: {_text(found)}{gone}</div>'
    data = " ".join(f'data-{d}="{v:.6f}"' for d, v in values.items())
    return (
        f'<tr class="item" {data} data-overall="{np.mean(list(values.values())):.6f}" '
        f'data-text="{(name + " " + prompt).lower()}"><td>{img}</td><td class="name" title="{name}">'
        f"{_text(Path(str(row['image'])).name)}"
        f'<div class="prompt">{prompt}{said}</div></td><td>'
        + "".join(_bar(d, values[d], lo, hi) for d in DIMENSIONS)
        + f"</td><td>{words}</td></tr>"
    )


def render(df: pd.DataFrame, roots: list[Path], title: str) -> str:
    ok = df["status"] == "ok"
    scores = df.loc[ok, list(DIMENSIONS)].astype(float)
    lo, hi = (
        (1.0, 5.0)
        if scores.empty or (scores.min().min() >= 1 and scores.max().max() <= 5)
        else (float(scores.min().min()), float(scores.max().max()))
    )
    explained = [c for c in (f"explanation_{d}" for d in DIMENSIONS) if c in df.columns]
    rows, failed = [], []
    for i, row in df.iterrows():
        name, prompt = _text(row["image"]), _text(row["prompt"])
        if row["status"] != "ok":
            failed.append(f"<tr><td>{i + 1}</td><td>{name}</td><td>{_text(row['status'])}</td></tr>")
            continue
        rows.append(_row(row, name, prompt, roots, explained, lo, hi))
    means = (
        " · ".join(f"{d} {scores[d].mean():.2f}" for d in DIMENSIONS)
        if not scores.empty
        else "no scored rows"
    )
    hists = "".join(
        f"<figure><figcaption>{d}</figcaption>{_histogram(scores[d].to_numpy(), lo, hi, COLOURS[d])}</figure>"
        for d in DIMENSIONS
    )
    options = "".join(f'<option value="{k}">{k}</option>' for k in ("overall", *DIMENSIONS))
    failed_html = (
        f'<h2 id="failed-title">Not scored ({len(failed)})</h2><table id="failed"><tr><th>row</th>'
        f"<th>image</th><th>reason</th></tr>{''.join(failed)}</table>"
        if failed
        else ""
    )
    return TEMPLATE.format(
        title=_text(title),
        total=len(df),
        scored=len(rows),
        failed=len(failed),
        means=means,
        hists=hists,
        options=options,
        rows="".join(rows),
        failed_html=failed_html,
        lo=lo,
        hi=hi,
    )


def write_report(
    results: Path,
    out: Path,
    images_root: Path | None = None,
    force: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Render `results` into `out`; returns rows, failed and warnings (each also passed to `warn`, by
    default printed to stderr)."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"{out}: the report is an HTML file; use a name ending in .html")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: output folder does not exist")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: exists; pass --force to overwrite")
    df = read_table(results)
    missing = {"image", "prompt", "status", *DIMENSIONS} - set(df.columns)
    if missing:
        raise ValueError(f"{results}: not a `mint-iqa score` table (missing {sorted(missing)})")
    df["status"] = df["status"].fillna("").astype(str)
    roots = [images_root] if images_root else [results.resolve().parent, Path.cwd()]
    write_text(out, render(df, roots, f"mint-iqa report: {results.name}"))
    warnings = [w for w in [_no_images_warning(df, roots)] if w]
    for line in warnings:
        (warn or _stderr)(line)
    return {"rows": len(df), "failed": int((df["status"] != "ok").sum()), "warnings": warnings}


def _no_images_warning(df: pd.DataFrame, roots: list[Path]) -> str | None:
    """A one-line warning when there are scored rows and none of their images is found under `roots`."""
    images = [str(image) for image in df.loc[df["status"] == "ok", "image"]]
    if not images or any(_find(image, roots) is not None for image in images):
        return None
    where = " or ".join(str(root) for root in roots)
    rows = "the 1 scored row" if len(images) == 1 else f"any of the {len(images)} scored rows"
    return (
        f"warning: no image found for {rows} (looked under {escape_controls(where)}); the report shows "
        f"scores without thumbnails (pass --images-root DIR)"
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #111; }}
header p {{ color: #555; margin: 4px 0; }}
.hists {{ display: flex; gap: 24px; flex-wrap: wrap; }} figure {{ margin: 0; }}
figcaption {{ font-weight: 600; }}
.controls {{ margin: 16px 0; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #e5e7eb; padding: 6px;
  vertical-align: top; text-align: left; }}
img, .noimg {{ width: {thumb}px; height: {thumb}px; object-fit: cover; border-radius: 4px;
  background: #f3f4f6; }}
.noimg {{ display: flex; align-items: center; justify-content: center; color: #888; font-size: 11px; }}
.name {{ max-width: 260px; word-break: break-all; }} .prompt {{ color: #555; font-style: italic; }}
.score {{ display: flex; align-items: center; gap: 6px; margin: 3px 0; }}
.label {{ width: 34px; color: #555; font-size: 12px; }} .num {{ width: 36px; text-align: right; }}
.track {{ width: 160px; height: 10px; background: #f3f4f6; border-radius: 5px; overflow: hidden; }}
.fill {{ display: block; height: 100%; }} td p {{ margin: 0 0 4px; max-width: 420px; }}
#failed td {{ color: #b91c1c; }}
.views button {{ font-size: 11px; padding: 1px 4px; margin: 2px 2px 0 0; }}
.words {{ color: #374151; font-size: 12px; font-style: normal; }}
</style></head>
<body>
<header><h1>{title}</h1>
<p>{total} items: <b>{scored}</b> scored, <b>{failed}</b> not scored. Scale {lo:g}-{hi:g},
higher is better.</p>
<p>Means: {means}</p></header>
<section class="hists">{hists}</section>
<div class="controls">
 <label>Sort by <select id="sort">{options}</select></label>
 <label><input type="checkbox" id="asc"> worst first</label>
 <label>Minimum <select id="filter-dim">{options}</select>
   <input id="min" type="number" step="0.1" value="{lo:g}" style="width:5em"></label>
 <label>Text <input id="text" type="search" placeholder="image or prompt"></label>
 <span id="shown"></span>
</div>
<table id="items"><thead><tr><th>image</th><th>name / prompt</th><th>scores</th><th>explanations</th>
</tr></thead>
<tbody>{rows}</tbody></table>
{failed_html}
<script>
(function () {{
  var body = document.querySelector("#items tbody");
  var rows = Array.prototype.slice.call(body.querySelectorAll("tr.item"));
  function update() {{
    var key = document.getElementById("sort").value, asc = document.getElementById("asc").checked;
    var dim = document.getElementById("filter-dim").value,
        min = parseFloat(document.getElementById("min").value);
    var text = document.getElementById("text").value.toLowerCase(), shown = 0;
    rows.sort(function (a, b) {{ var d = parseFloat(a.dataset[key]) - parseFloat(b.dataset[key]);
      return asc ? d : -d; }});
    rows.forEach(function (r) {{
      var visible = (isNaN(min) || parseFloat(r.dataset[dim]) >= min) && r.dataset.text.indexOf(text) >= 0;
      r.style.display = visible ? "" : "none"; if (visible) shown++; body.appendChild(r);
    }});
    document.getElementById("shown").textContent = "showing " + shown + " of " + rows.length;
    document.body.dataset.shown = shown;
  }}
  ["sort", "asc", "filter-dim", "min", "text"].forEach(function (id) {{
    document.getElementById(id).addEventListener("input", update); }});
  function show(row, view) {{  // the image, or the image under its quality / authenticity damage map
    var img = row.querySelector("img");
    if (img && img.dataset[view]) {{ img.src = img.dataset[view]; row.dataset.view = view; }}
  }}
  rows.forEach(function (r) {{
    r.querySelectorAll("button[data-view]").forEach(function (b) {{
      b.addEventListener("click", function () {{ show(r, b.dataset.view); }}); }}); }});
  var start = /view=([a-z]+)/.exec(location.hash);  // report.html#view=authenticity opens on that map
  if (start) rows.forEach(function (r) {{ show(r, start[1]); }});
  update();
  document.body.dataset.ready = "1";
}})();
</script>
</body></html>
""".replace("{thumb}", str(THUMB))
