"""Step `validate`: a great-expectations gate between `prepare` and training.

Checks on the prepared manifest: required columns, unique ids, labels present and in [0, 1], known
split values, every image inside the dataset root and decodable (decompression-bomb limit on), and
the strict protocol free of leakage (no reference in more than one of train / val / test).
Row-level checks that GX cannot express on its own (decoding, leakage) become derived columns that
GX then validates, so every failure is reported the same way: expectation, column, unexpected
count and a few examples. On failure the step writes its report and exits non-zero, so no
downstream stage runs on bad data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mint_iqa.config import Params
from mint_iqa.data import manifest
from mint_iqa.data.splits import SPLITS
from mint_iqa.io import ImageError, confined, load_image, write_text
from mint_iqa.progress import progress

ESCAPING_PATH = r"(?:^[/\\]|^[A-Za-z]:|(?:^|[/\\])\.\.(?:[/\\]|$))"


class ValidationFailed(RuntimeError):
    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class Report:
    success: bool
    rows: int
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [
            f"FAILED {r['expectation']}({r['column']}): {r['unexpected_count']} unexpected, "
            f"e.g. {', '.join(map(str, r['examples']))}"
            for r in self.results
            if not r["success"]
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "rows": self.rows,
            "expectations": len(self.results),
            "failed": sum(not r["success"] for r in self.results),
            "results": self.results,
        }

    def summary(self) -> str:
        lines = [
            f"# Validation: {'PASSED' if self.success else 'FAILED'}",
            "",
            f"{self.rows} rows, {len(self.results)} expectations, "
            f"{sum(not r['success'] for r in self.results)} failed.",
            "",
            "| expectation | column | result | unexpected | examples |",
            "|---|---|---|---|---|",
        ]
        for r in self.results:
            lines.append(
                f"| {r['expectation']} | {r['column']} | {'ok' if r['success'] else 'FAILED'} | "
                f"{r['unexpected_count']} | {'; '.join(map(str, r['examples']))} |"
            )
        return "\n".join(lines) + "\n"


def _file_check(df: pd.DataFrame, root: Path, max_pixels: int) -> list[str | None]:
    """None for a usable image, else '<path>: <reason>'."""
    out: list[str | None] = []
    for rel in progress(df["image"].astype(str), desc="validate: decoding images", unit="img", leave=False):
        try:
            load_image(confined(root, rel), max_pixels=max_pixels, name=rel)
            out.append(None)
        except (ImageError, ValueError) as exc:
            out.append(str(exc) if str(exc).startswith(rel) else f"{rel}: {exc}")
    return out


def _strict_leakage(df: pd.DataFrame) -> pd.Series:
    """The reference id on rows whose reference sits in more than one strict split, else None."""
    splits_per_ref = df.groupby("ref_id")["split_strict"].nunique()
    leaking = set(splits_per_ref[splits_per_ref > 1].index)
    return df["ref_id"].where(df["ref_id"].isin(leaking), None).astype(object)


def _suite(df: pd.DataFrame, labels: list[str]) -> list[Any]:
    import great_expectations.expectations as gxe

    required = [c for c in manifest.COLUMNS if c not in ("licence",)]
    exps: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in required]
    present = set(df.columns)
    if "id" in present:
        exps += [
            gxe.ExpectColumnValuesToNotBeNull(column="id"),
            gxe.ExpectColumnValuesToBeUnique(column="id"),
        ]
    for col in ("image", "prompt", "ref_id"):
        if col in present:
            exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
    if "image" in present:
        exps.append(gxe.ExpectColumnValuesToNotMatchRegex(column="image", regex=ESCAPING_PATH))
    for dim in labels:
        if dim in present:
            exps += [
                gxe.ExpectColumnValuesToNotBeNull(column=dim),
                gxe.ExpectColumnValuesToBeBetween(column=dim, min_value=0.0, max_value=1.0),
            ]
    for col in ("split_paper", "split_strict"):
        if col in present:
            exps.append(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(SPLITS)))
    exps += [gxe.ExpectColumnValuesToBeNull(column="file_check")]
    if {"ref_id", "split_strict"} <= present:
        exps.append(gxe.ExpectColumnValuesToBeNull(column="strict_leakage"))
    return exps


def run_expectations(df: pd.DataFrame, labels: list[str], examples: int = 3) -> Report:
    """Validate a manifest frame that already carries the derived `file_check` / `strict_leakage` columns."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("prepared")
        .add_dataframe_asset("manifest")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="manifest"))
    for exp in _suite(df, labels):
        suite.add_expectation(exp)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name="manifest")
    )
    result_format: dict[str, Any] = {"result_format": "COMPLETE"}
    if "id" in df.columns:
        result_format["unexpected_index_column_names"] = ["id"]
    outcome = definition.run(batch_parameters={"dataframe": df}, result_format=result_format)
    results = []
    for res in outcome.results:
        cfg, info = res.expectation_config, res.result or {}
        column = cfg.kwargs.get("column", "")
        values = info.get("unexpected_list") or []
        ids = [i.get("id") if isinstance(i, dict) else i for i in (info.get("unexpected_index_list") or [])]
        if res.success:
            shown = []
        elif cfg.type == "expect_column_to_exist":
            shown = [f"column {column!r} is missing"]
        elif ids and (column in ("id", "file_check") or all(pd.isna(v) for v in values[:examples])):
            shown = [f"id={i}" if column != "file_check" else v for i, v in zip(ids, values)][:examples]
        else:
            shown = [f"{v!r} (id={i})" if ids else repr(v) for v, i in zip(values, ids or values)][:examples]
        results.append(
            {
                "expectation": cfg.type,
                "column": column,
                "success": bool(res.success),
                "unexpected_count": int(info.get("unexpected_count") or (0 if res.success else 1)),
                "examples": shown,
            }
        )
    return Report(success=bool(outcome.success), rows=len(df), results=results)


def validate_dataset(prepared_dir: str | Path, max_pixels: int, examples: int = 3) -> Report:
    df, meta = manifest.read(prepared_dir)
    root = manifest.image_root(prepared_dir, meta)
    if "image" in df.columns:
        df["file_check"] = _file_check(df, root, max_pixels)
    else:
        df["file_check"] = None
    df["file_check"] = df["file_check"].astype(object)
    if {"ref_id", "split_strict"} <= set(df.columns):
        df["strict_leakage"] = _strict_leakage(df)
    return run_expectations(df, meta.get("labels", []), examples)


def validate(params: Params) -> Report:
    """Validate `prepare.out_dir`; write the JSON report (DVC metric) and summary; raise on failure."""
    cfg = params.validation
    report = validate_dataset(params.prepare.out_dir, cfg.max_pixels, cfg.examples)
    write_text(cfg.metrics, json.dumps(report.to_json(), indent=2) + "\n")
    write_text(Path(cfg.out_dir) / "summary.md", report.summary())
    if not report.success:
        raise ValidationFailed(report.failures)
    return report
