"""Start-up benchmark: how long a user waits for the first answer of one CLI call, in fresh processes.

    python bench/startup.py                       # the default model (see `mint-iqa use-model`)
    python bench/startup.py --model DIR --repeats 5
    python bench/startup.py --code ../other-checkout   # the same calls against another checkout's code

Rows: importing the CLI, `score` of one image (scores only), `score --explain`, `explain`; each the median
wall time of `--repeats` runs of a new process (the time to first score of a single image is the whole
call). Also lists which heavy libraries the scoring path imports. Every process runs in a temporary folder,
so `--code` decides which package is imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HEAVY = (
    "deepspeed",
    "cv2",
    "scipy",
    "mlflow",
    "sklearn",
    "skimage",
    "great_expectations",
    "prefect",
    "kornia",
)


def _env(code: Path | None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code.resolve()), env.get("PYTHONPATH", "")])
    return env


def _median_seconds(argv: list[str], env: dict[str, str], repeats: int, cwd: str) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(
                f"{' '.join(argv[:4])} ... failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"
            )
    return statistics.median(times)


# long: the whole measurement as a script, top to bottom, ending in its table
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the default model)")
    parser.add_argument(
        "--code", type=Path, help="checkout whose mint_iqa package to run (default: this one)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = _env(args.code)
    model = (
        str(Path(args.model).resolve())
        if args.model
        else subprocess.run(
            [sys.executable, "-m", "mint_iqa", "use-model"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    cli = [sys.executable, "-m", "mint_iqa"]
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "photo.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 768, 3), dtype=np.uint8)).save(image)
        out = Path(tmp) / "scores.csv"
        prompt = ["-p", "a red rocket lifting off"]
        rows = [
            ("import mint_iqa.cli", [sys.executable, "-c", "import mint_iqa.cli"]),
            (
                "score, 1 image",
                [*cli, "score", str(image), *prompt, "-o", str(out), "--force", "--model", model],
            ),
            (
                "score --explain, 1 image",
                [
                    *cli,
                    "score",
                    str(image),
                    *prompt,
                    "-o",
                    str(out),
                    "--force",
                    "--explain",
                    "--model",
                    model,
                ],
            ),
            ("explain, 1 image", [*cli, "explain", str(image), *prompt, "--model", model]),
        ]
        print(
            f"code: {(args.code or Path(__file__).parents[1]).resolve()}  model: {model}  "
            f"median of {args.repeats} fresh processes"
        )
        print(f"| {'call':<26} | seconds |\n|{'-' * 28}|---------|")
        for name, argv in rows:
            print(f"| {name:<26} | {_median_seconds(argv, env, args.repeats, tmp):7.2f} |", flush=True)
    probe = (
        "import sys, mint_iqa.inference.api, mint_iqa.inference.assess, mint_iqa.cli; "
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')"
    )
    heavy = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"heavy libraries imported by the scoring path: {heavy}")


if __name__ == "__main__":
    main()
