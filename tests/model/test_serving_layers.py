"""The served model is the inference layer only: loading and calling it never imports the training code."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

PROBE = """
import json, sys
from types import SimpleNamespace
import pandas as pd
from mint_iqa.inference.serving.pyfunc_model import MintIQAModel
model = MintIQAModel()
model.load_context(SimpleNamespace(artifacts={"assessor": sys.argv[1]}))
out = model.predict(None, pd.read_json(sys.argv[2], orient="records"), params={"explain": True})
print(json.dumps({"status": out["status"].tolist(),
                  "modules": sorted(m for m in sys.modules
                                  if m.split(".")[0] in ("mint_iqa", "deepspeed", "cv2"))}))
"""


def test_the_served_model_loads_and_predicts_without_the_training_layer(
    assessor_dir: Path, folder: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.json"
    image = base64.b64encode((folder / "ok0.png").read_bytes()).decode()
    pd.DataFrame({"image": [image], "prompt": ["a photo of a cat"]}).to_json(rows, orient="records")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(assessor_dir), str(rows)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == ["ok"]
    assert "mint_iqa.inference.assess" in result["modules"]  # the probe really loaded the model
    assert not [
        m
        for m in result["modules"]
        if m.startswith(("mint_iqa.train", "mint_iqa.evaluate", "deepspeed", "cv2"))
    ], result["modules"]
