"""The MLflow pyfunc model of mint-iqa ("models from code": MLflow logs this file, not a pickle).

Input: a DataFrame with `image` (base64 PNG/JPEG bytes, optionally a `data:` URI; a file path only when
`MINT_IQA_IMAGE_ROOT` is set, and then only inside it) and `prompt`. Output: one row per input with
`quality`, `authenticity`, `correspondence`, `status` and `explanation_<dimension>`. The inference
parameter `explain` (default true; REST: `"params": {"explain": false}`) turns the explanations off: the
scores alone come back, many times faster, with empty explanation columns.
A malformed request (missing column, bad base64, not an image, too many pixels, empty prompt) raises an
`MlflowException` with INVALID_PARAMETER_VALUE, which the scoring server answers with HTTP 400 and the
message, naming the row.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

MAX_PIXELS = int(os.environ.get("MINT_IQA_MAX_PIXELS", 16_000_000))


def _bad(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode_image(value: Any, row: int) -> Any:
    """A decoded RGB image from a base64 string (or a confined path); raises a 400-type error."""
    from mint_iqa.io import ImageError, confined, load_image

    if not isinstance(value, str) or not value:
        raise _bad(f"row {row}: 'image' must be a non-empty string (base64 image bytes)")
    root = os.environ.get("MINT_IQA_IMAGE_ROOT")
    if root and not value.startswith("data:") and len(value) < 1024 and "/" in value:
        try:
            path = confined(root, value)
        except ValueError as exc:
            raise _bad(f"row {row}: {exc}") from None
        source: Any = path
    else:
        payload = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            source = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"row {row}: 'image' is not valid base64") from None
    try:
        return load_image(source, max_pixels=MAX_PIXELS, name=f"row {row}")
    except ImageError as exc:
        raise _bad(str(exc)) from None


class MintIQAModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from mint_iqa.assess import Assessor

        self.assessor = Assessor.load(context.artifacts["assessor"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            raise _bad("expected a table with columns 'image' and 'prompt'")
        from mint_iqa.inference import MAX_PROMPT_CHARS

        missing = [c for c in ("image", "prompt") if c not in model_input.columns]
        if missing:
            raise _bad(f"missing column(s) {missing}; expected 'image' (base64) and 'prompt'")
        images, prompts = [], []
        for row, (image, prompt) in enumerate(zip(model_input["image"], model_input["prompt"])):
            if not isinstance(prompt, str) or not prompt.strip():
                raise _bad(f"row {row}: 'prompt' must be a non-empty string")
            if len(prompt) > MAX_PROMPT_CHARS:
                raise _bad(f"row {row}: 'prompt' is longer than {MAX_PROMPT_CHARS} characters")
            images.append(decode_image(image, row))
            prompts.append(prompt)
        if (params or {}).get("explain", True):
            return self.assessor.assess(images, prompts)
        from mint_iqa.assess import EXPLANATION_COLUMNS

        scores = self.assessor.scorer.score(images, prompts, show_progress=False)
        return scores.assign(**{column: "" for column in EXPLANATION_COLUMNS})


set_model(MintIQAModel())
