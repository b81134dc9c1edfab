"""Typed parameters: `params.yaml` is loaded once into these models and handed to every step.

`params.yaml` is the one source of truth: every default here equals its value there
(`tests/code/test_config.py` checks), and the tables only it holds (defect ladders, label scales) have
empty defaults.

Every model forbids unknown keys, so a typo in `params.yaml` (or in `dvc exp run -S ...`) is an error
instead of a silently ignored default.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LEVELS = 5
FAMILIES = ("pristine", "quality", "authenticity", "correspondence")
DIMENSIONS = ("quality", "authenticity", "correspondence")
EXPLANATION_COLUMNS = [f"explanation_{d}" for d in DIMENSIONS]  # one explanation per dimension
FLAWLESS = 0.8  # a label at or above this is "excellent" (grade 5): no visible defect in that dimension
BATCH_SIZE = 32  # images per forward pass when scoring, unless the caller says otherwise


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    source: Literal["proxy", "aigciqa2023plus", "agiqa3k", "generic"] = "proxy"
    raw_dir: Path = Path("data")
    images_dir: Path | None = None
    annotations: Path | None = None
    label_range: tuple[float, float] | None = None  # None: the adapter's documented default


class LabelConfig(Strict):
    """MOS-like labels in [0, 1]. A distorted image is labelled by the summed severity of its defects:
    `measure: level` takes each defect's drawn level over LEVELS (the same scale for every kind);
    `measure: damage` the damage it measurably did (1 - SSIM against the pristine crop, see
    `damage.damage`) over its kind's `damage_scale`. Prompt mismatches by their ladder level."""

    measure: Literal["level", "damage"] = "damage"
    pristine: float = Field(0.9, gt=0, le=1)
    floor: float = Field(0.1, ge=0, lt=1)
    damage_scale: dict[str, float] = {}

    def for_level(self, level: int) -> float:
        """Label of a ladder level: 0 is pristine, LEVELS is the floor, linear between."""
        return self.pristine - (self.pristine - self.floor) * level / LEVELS

    def scale(self, distortion: str) -> float:
        if distortion not in self.damage_scale:
            raise ValueError(
                f"prepare.labels.damage_scale has no entry for {distortion!r}; run `mint-iqa data calibrate`"
            )
        return self.damage_scale[distortion]

    def for_severity(self, severity: float) -> float:
        """Label of a summed severity (each defect's damage over its `damage_scale`): 0 is pristine, and the
        label falls linearly to 80 % of the way to `floor` at 0.8, then approaches the floor smoothly
        (strictly decreasing: images damaged past one defect's worst still rank, and no labels tie)."""
        s = max(0.0, severity)
        if s > 0.8:
            s = 0.8 + 0.2 * (1.0 - math.exp(-(s - 0.8) / 0.2))
        return self.pristine - (self.pristine - self.floor) * s

    def for_damage(self, distortion: str, damage: float) -> float:
        """Label of one measured damage: 0 is pristine, `damage_scale[distortion]` or more is the floor."""
        return self.for_severity(damage / self.scale(distortion))


class MixConfig(Strict):
    """Chance of each dimension's defect in a sample, drawn independently (levels uniform in [1, 5])."""

    quality: float = Field(0.97, ge=0, le=1)  # a quality defect ...
    second: float = Field(0.25, ge=0, le=1)  # ... and then a second one of another kind
    authenticity: float = Field(0.97, ge=0, le=1)  # a local authenticity defect
    correspondence: float = Field(0.85, ge=0, le=1)  # a mismatched prompt (ladder level 1-5)


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
    images_per_reference: int = Field(40, ge=1)
    workers: int = Field(2, ge=1)
    mix: MixConfig = MixConfig()  # the prepared (evaluation) images: nearly every one damaged
    labels: LabelConfig = LabelConfig()
    quality: Ladders = {}
    authenticity: Ladders = {}
    splits: SplitConfig = SplitConfig()

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


class ModelConfig(Strict):
    preset: str = "lite0"  # lite0 | tiny | clip-<open_clip model> | paper
    overrides: dict[str, Any] = {}  # merged into the preset, e.g. {vision: {layers: 2}}
    explainer: dict[
        str, Any
    ] = {}  # merged into the preset's explainer section, e.g. {lm: {num_hidden_layers: 2}}


class LossConfig(Strict):
    l1: float = 1.0  # L1 to the labels
    plcc: float = 0.5  # 1 - Pearson correlation per dimension within a batch (rank-aware, scale-free)
    rank: float = 0.0  # pairwise margin ranking loss
    aux: float = 0.1  # auxiliary distortion-type classification
    locate: float = 1.0  # per-patch visible damage (quality / authenticity family) of synthesised samples
    match: float = 0.1  # image-prompt contrastive loss (other images' captions in the batch as negatives)
    match_apart: bool = True  # the matching space trains none of the scorer's own parameters


class TrainConfig(Strict):
    out_dir: Path = Path("artifacts/scorer")
    checkpoint_dir: Path = Path(
        "artifacts/checkpoints"
    )  # DeepSpeed checkpoints for --resume (not a DVC output)
    protocols: list[Literal["paper", "strict", "lko"]] = ["paper", "strict"]
    epochs: int = Field(4, ge=1)
    steps_per_epoch: int = Field(105, ge=1)
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    zero_stage: int = Field(0, ge=0, le=3)
    bf16: bool = False
    fix_rate: float = Field(0.0, ge=0, le=1)  # fraction of vision blocks frozen (0.6 in the paper)
    crop: int | None = 128  # train on random crops of this size (None: whole images)
    synthetic_fraction: float = Field(1.0, ge=0, le=1)  # on-the-fly samples vs prepared train images
    augment: bool = True  # recolour pristine crops before distorting (content diversity)
    reuse: int = Field(2, ge=1, le=8)  # views (flips / 90-degree turns) per synthesised sample
    mix: MixConfig = MixConfig(
        quality=0.8, second=0.25, authenticity=0.6, correspondence=0.5
    )  # training samples
    autocast: bool = False  # bf16 autocast for the forward pass (CPU AVX512-BF16, GPUs)
    workers: int = Field(1, ge=0)  # data-loader processes synthesising samples
    threads: int = Field(2, ge=1)  # torch intra-op threads
    num_procs: int = Field(1, ge=1)  # >1: one process per rank, launched by torchrun (`train/launch.py`)
    checkpoint_every: int = Field(0, ge=0)  # extra checkpoints every N steps (0: once per epoch)
    ema: float = Field(0.99, ge=0, lt=1)  # decay of the weight average validated and exported (0: off)
    deepspeed_extra: Path | None = None  # JSON merged over the built DeepSpeed config (infra/deepspeed/)
    loss: LossConfig = LossConfig()


class ExplainConfig(Strict):
    """Stage 2. Batches, crops, threads, ZeRO and clipping are shared with `train`."""

    out_dir: Path = Path("artifacts/explainer")
    epochs: int = Field(1, ge=1)
    steps_per_epoch: int = Field(90, ge=1)
    lr: float = 1e-3
    warmup_steps: int = 30
    feedback: bool = True  # stage-1 query embeddings -> zero-initialised projection
    evidence: bool = True  # stage-1 level and defect-class tokens in the LM prefix
    level_weight: float = Field(5.0, ge=1.0)  # loss weight of the level words in the answers
    constrain_levels: bool = True  # answers may state only the stage-1 level of a dimension
    constrain_reasons: bool = True  # answers may give only the reason fitting stage 1's findings
    fit_levels: bool = True  # stage-1 score -> level cuts fit on the validation split
    val_images: int = Field(96, ge=1)  # validation images answered per epoch (best-epoch choice)
    metrics: Path = Path("metrics/explainer.json")
    test_images: int | None = 240  # test images explained by evaluation (None: all)
    num_beams: int = Field(1, ge=1)  # 1: greedy decoding


class EvaluateConfig(Strict):
    metrics: Path = Path("metrics/scorer.json")
    plots: Path = Path("plots/scorer")
    bootstrap: int = 1000
    batch_size: int = BATCH_SIZE
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")  # auto: CUDA when present, else CPU


class RegisterConfig(Strict):
    """The MLflow registry and its promotion gate."""

    model_name: str = "mint-iqa"
    protocol: Literal["paper", "strict"] = "paper"  # the assessor that is the product (paper: all references)
    epsilon: float = Field(0.02, ge=0)  # no dimension's held-out SRCC or level accuracy may drop more
    delta: float = Field(0.005, ge=0)  # mean SRCC or mean level accuracy must improve by this
    minimums: dict[str, float] = {"quality": 0.3, "authenticity": 0.2, "correspondence": 0.15}  # first model
    holdout_images: int = Field(160, ge=10)  # images of the protocol's test split both models score
    record: Path = Path("artifacts/registry/registered.json")
    decision: Path = Path("artifacts/registry/decision.md")


class GeneraliseConfig(Strict):
    """Leave-kinds-out: defect kinds are dealt into folds (within each group of `degradations.GROUPS`); the
    `lko` protocol trains on the `strict` training references without fold `fold`'s kinds, and is scored on
    `images` fresh composites of the `strict` test references made with that fold's kinds only."""

    folds: int = Field(3, ge=2)
    fold: int = 0
    images: int = Field(400, ge=10)
    out_dir: Path = Path("artifacts/generalisation")  # the rendered images and every model's scores
    metrics: Path = Path("metrics/generalisation.json")
    pointing: Path = Path("metrics/pointing.json")  # how well the damage maps point (`generalise.pointing`)

    @model_validator(mode="after")
    def _fold_in_range(self) -> GeneraliseConfig:
        if not 0 <= self.fold < self.folds:
            raise ValueError(f"generalise.fold must be in [0, {self.folds})")
        return self


class Params(Strict):
    seed: int = 0
    data: DataConfig = DataConfig()
    prepare: PrepareConfig = PrepareConfig()
    validation: ValidateConfig = Field(ValidateConfig(), alias="validate")
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    explain: ExplainConfig = ExplainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    generalise: GeneraliseConfig = GeneraliseConfig()
    registry: RegisterConfig = Field(RegisterConfig(), alias="register")

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
    """Read `params.yaml` and apply `key.path=value` overrides. A missing file is an error: the defaults
    above equal the project's `params.yaml` (a test checks), but its defect ladders and label scales live
    only there."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no parameter file (run from the project folder, or pass --params)")
    tree: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    for item in overrides:
        _apply_override(tree, item)
    return Params.model_validate(tree)
