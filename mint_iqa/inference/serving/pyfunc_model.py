"""The MLflow pyfunc model of mint-iqa ("models from code": MLflow logs this file, not a pickle).

Input: a DataFrame with `image` (base64 PNG/JPEG bytes, optionally a `data:` URI; a file path only when
`MINT_IQA_IMAGE_ROOT` is set, and then only inside it) and `prompt`. Output: one row per input with
`quality`, `authenticity`, `correspondence`, `status` and `explanation_<dimension>`. The inference
parameter `explain` (default true; REST: `"params": {"explain": false}`) turns the explanations off: the
scores alone come back, many times faster, with empty explanation columns. `maps` (default false) adds
`quality_map` and `authenticity_map`: each a JSON list of rows of how visibly damaged each cell of the
image is, in [0, 1], at most `MAP_CELLS` cells a side (`mint_iqa.maps`), from the same pass as the scores.
`words` (default false) adds `words`: a JSON list of [word, support in [0, 1]] for the prompt's words an
ImageNet classifier can look for (`mint_iqa.models.words`).
A bad row (bad base64, not an image, a decoder error, too many pixels, an empty or over-long prompt) gets
NaN scores and its reason in `status`, naming the row; the other rows are scored. A malformed request (not
a table, a missing column, an unknown parameter) raises an `MlflowException` with INVALID_PARAMETER_VALUE,
which the scoring server answers with HTTP 400 (`mint-iqa serve` keeps that answer short).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

MAX_PIXELS = int(os.environ.get("MINT_IQA_MAX_PIXELS", 16_000_000))
MAP_CELLS = 32


def map_json(grid: Any) -> str:
    """A damage map as compact JSON, area-pooled to at most `MAP_CELLS` cells a side ('' for none)."""
    if grid is None:
        return ""
    from PIL import Image

    rows, cols = grid.shape
    scale = min(1.0, MAP_CELLS / max(rows, cols))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    small = np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))
    return json.dumps(np.round(small, 3).tolist(), separators=(",", ":"))


def _bad(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode_image(value: Any, row: int) -> Any:
    """A decoded RGB image from a base64 string (or a confined path); raises `ImageError`
    ('row N: reason')."""
    from mint_iqa.io import ImageError, confined, load_image

    if not isinstance(value, str) or not value:
        raise ImageError(f"row {row}: 'image' must be a non-empty string (base64 image bytes)")
    root = os.environ.get("MINT_IQA_IMAGE_ROOT")
    if root and not value.startswith("data:") and len(value) < 1024 and "/" in value:
        try:
            source: Any = confined(root, value)
        except ValueError as exc:
            raise ImageError(f"row {row}: {exc}") from None
    else:
        payload = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            source = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError(f"row {row}: 'image' is not valid base64") from None
    return load_image(source, max_pixels=MAX_PIXELS, name=f"row {row}")


def prompt_problem(prompt: Any, row: int) -> str | None:
    from mint_iqa.inference.scoring import MAX_PROMPT_CHARS

    if not isinstance(prompt, str) or not prompt.strip():
        return f"row {row}: 'prompt' must be a non-empty string"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"row {row}: 'prompt' is longer than {MAX_PROMPT_CHARS} characters"
    return None


class MintIQAModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from mint_iqa.inference.assess import Assessor

        self.assessor = Assessor.load(context.artifacts["assessor"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from mint_iqa.config import DIMENSIONS, EXPLANATION_COLUMNS
        from mint_iqa.io import OK, ImageError

        if not isinstance(model_input, pd.DataFrame):
            raise _bad("expected a table with columns 'image' and 'prompt'")
        missing = [c for c in ("image", "prompt") if c not in model_input.columns]
        if missing:
            raise _bad(f"missing column(s) {missing}; expected 'image' (base64) and 'prompt'")
        from mint_iqa.inference.scoring import MAP_COLUMNS, NO_MAPS, NO_WORDS
        from mint_iqa.inference.serving import PARAMS

        params = params or {}
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise _bad(f"unknown params {unknown}; this model accepts: {', '.join(PARAMS)}")
        maps, words = bool(params.get("maps", False)), bool(params.get("words", False))
        if maps and not self.assessor.scorer.has_maps:
            raise _bad(NO_MAPS)
        if words and not self.assessor.scorer.has_words:
            raise _bad(NO_WORDS)
        columns = [*DIMENSIONS, "status", *EXPLANATION_COLUMNS, *(MAP_COLUMNS if maps else ())]
        columns += ["words"] if words else []
        out = pd.DataFrame(
            {**dict.fromkeys(columns, ""), **dict.fromkeys(DIMENSIONS, np.nan), "status": OK},
            index=range(len(model_input)),
        )[columns]
        good, images, prompts = [], [], []
        for row, (image, prompt) in enumerate(zip(model_input["image"], model_input["prompt"])):
            try:
                problem = prompt_problem(prompt, row)
                decoded = None if problem else decode_image(image, row)
            except ImageError as exc:
                problem = str(exc)
            if problem:
                out.loc[row, "status"] = problem
            else:
                good.append(row)
                images.append(decoded)
                prompts.append(prompt)
        if good:
            if params.get("explain", True):
                scored = self.assessor.assess(images, prompts, maps=maps, words=words)
            else:
                scorer = self.assessor.scorer
                scored = scorer.score(images, prompts, show_progress=False, maps=maps, words=words)
            for column in MAP_COLUMNS if maps else ():
                scored[column] = [map_json(m) for m in scored[column]]
            if words:
                scored["words"] = [
                    json.dumps([[w, round(v, 4)] for w, v in p or []]) for p in scored["words"]
                ]
            present = [c for c in columns if c in scored.columns]
            out.loc[good, present] = scored[present].to_numpy()
        return out.astype({d: float for d in DIMENSIONS})


set_model(MintIQAModel())
