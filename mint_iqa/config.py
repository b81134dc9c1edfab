"""Typed parameters: `params.yaml` is loaded once into these models and handed to every step.

Every model forbids unknown keys, so a typo in `params.yaml` (or in `dvc exp run -S ...`) is an error
instead of a silently ignored default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LEVELS = 5
FAMILIES = ("pristine", "quality", "authenticity", "correspondence")
DIMENSIONS = ("quality", "authenticity", "correspondence")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    source: Literal["proxy", "aigciqa2023plus", "agiqa3k", "generic"] = "proxy"
    raw_dir: Path = Path("data")
    images_dir: Path | None = None
    annotations: Path | None = None
    label_range: tuple[float, float] | None = None   # None: the adapter's documented default


class LabelConfig(Strict):
    pristine: float = Field(0.9, gt=0, le=1)
    floor: float = Field(0.1, ge=0, lt=1)

    def for_level(self, level: int) -> float:
        """MOS-like label of a distortion level: 0 is pristine, LEVELS is the floor, linear between."""
        return self.pristine - (self.pristine - self.floor) * level / LEVELS


class PaperSplit(Strict):
    train: float = 0.7
    val: float = 0.1
    test: float = 0.2

    @model_validator(mode="after")
    def _sums_to_one(self) -> PaperSplit:
        if abs(self.train + self.val + self.test - 1) > 1e-6:
            raise ValueError("prepare.splits.paper fractions must sum to 1")
        return self


class StrictSplit(Strict):
    folds: int = Field(5, ge=3)
    test_fold: int = 0

    @model_validator(mode="after")
    def _fold_in_range(self) -> StrictSplit:
        if not 0 <= self.test_fold < self.folds:
            raise ValueError(f"prepare.splits.strict.test_fold must be in [0, {self.folds})")
        return self


class SplitConfig(Strict):
    paper: PaperSplit = PaperSplit()
    strict: StrictSplit = StrictSplit()


Ladders = dict[str, dict[str, list[float]]]


class PrepareConfig(Strict):
    out_dir: Path = Path("artifacts/prepared")
    image_size: int = Field(256, ge=32)
    images_per_reference: int = Field(120, ge=1)
    workers: int = Field(2, ge=1)
    family_mix: dict[str, float] = {"pristine": 0.1, "quality": 0.3, "authenticity": 0.3,
                                    "correspondence": 0.3}
    labels: LabelConfig = LabelConfig()
    quality: Ladders = {}
    authenticity: Ladders = {}
    splits: SplitConfig = SplitConfig()

    @field_validator("family_mix")
    @classmethod
    def _known_families(cls, mix: dict[str, float]) -> dict[str, float]:
        unknown = set(mix) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown families {sorted(unknown)}; expected {FAMILIES}")
        if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("family_mix needs non-negative shares with a positive sum")
        return mix

    @field_validator("quality", "authenticity")
    @classmethod
    def _five_levels(cls, ladders: Ladders) -> Ladders:
        for name, params in ladders.items():
            for key, values in params.items():
                if len(values) != LEVELS:
                    raise ValueError(f"{name}.{key} needs {LEVELS} values (one per level), got {len(values)}")
        return ladders


class ValidateConfig(Strict):
    out_dir: Path = Path("artifacts/validation")
    metrics: Path = Path("metrics/validation.json")
    max_pixels: int = 50_000_000
    examples: int = 3


class Params(Strict):
    seed: int = 0
    data: DataConfig = DataConfig()
    prepare: PrepareConfig = PrepareConfig()
    validation: ValidateConfig = Field(ValidateConfig(), alias="validate")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _apply_override(tree: dict[str, Any], dotted: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML) to a nested dict."""
    if "=" not in dotted:
        raise ValueError(f"override {dotted!r} is not of the form key.path=value")
    key, raw = dotted.split("=", 1)
    *parents, leaf = key.strip().split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {part!r} is not a group")
    node[leaf] = yaml.safe_load(raw)


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read `params.yaml` (missing file -> all defaults) and apply `key.path=value` overrides."""
    path = Path(path)
    tree: dict[str, Any] = yaml.safe_load(path.read_text()) if path.exists() else {}
    tree = tree or {}
    for item in overrides:
        _apply_override(tree, item)
    return Params.model_validate(tree)
