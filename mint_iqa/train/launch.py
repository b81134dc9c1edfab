"""Multi-process training: re-run the same CLI command under `torchrun`, one process per rank.

DeepSpeed reads the ranks torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and uses gloo on
CPU. Each rank draws its own training samples (the rank is part of every sample's seed) and DeepSpeed
averages the gradients, so all ranks end with identical weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mint_iqa.train.engine import _free_port


def in_worker() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def relaunch(num_procs: int, argv: list[str], threads: int) -> int:
    """Run `python -m mint_iqa <argv>` on `num_procs` ranks; returns the launcher's exit code."""
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        f"--nproc_per_node={num_procs}",
        f"--master_port={_free_port()}",
        "-m",
        "mint_iqa",
        *argv,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // num_procs))}
    env.pop("RANK", None)
    return subprocess.call(cmd, env=env)
