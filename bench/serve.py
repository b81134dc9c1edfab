"""Serving benchmark: concurrent clients against a running `mint-iqa serve` on loopback.

    make serve &                                  # or: mint-iqa serve --model models:/mint-iqa@champion
    python bench/serve.py --url http://127.0.0.1:5001 --clients 64 --requests 256

Each client posts one image (a prepared 256-px proxy image, base64) with its prompt per request, until the
bounded total is reached; prints p50 / p95 latency, throughput and the status counts, and exits.
`--scores-only` sends `"params": {"explain": false}` (three scores, no generated explanations).
Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]


def payloads(prepared: Path, n: int, explain: bool = True) -> list[dict]:
    df = pd.read_parquet(prepared / "manifest.parquet").head(n)
    extra = {} if explain else {"params": {"explain": False}}
    return [
        {
            "dataframe_split": {
                "columns": ["image", "prompt"],
                "data": [[base64.b64encode((prepared / row.image).read_bytes()).decode(), row.prompt]],
            },
            **extra,
        }
        for row in df.itertuples()
    ]


def run(url: str, clients: int, total: int, bodies: list[dict], timeout: float) -> dict:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    lock, counter = threading.Lock(), iter(range(total))

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                code = session.post(
                    f"{url}/invocations", json=bodies[i % len(bodies)], timeout=timeout
                ).status_code
            except requests.RequestException:
                code = -1
            with lock:
                latencies.append(time.perf_counter() - start)
                codes[code] = codes.get(code, 0) + 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": total,
        "wall_s": round(wall, 2),
        "throughput_rps": round(total / wall, 2),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
        "status_counts": codes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5001")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--prepared", type=Path, default=ROOT / "artifacts" / "prepared")
    parser.add_argument("--scores-only", action="store_true", help="no explanations (params: explain=false)")
    args = parser.parse_args()
    host = urlparse(args.url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        sys.exit(f"{args.url}: this benchmark only targets loopback addresses")
    result = run(
        args.url, args.clients, args.requests, payloads(args.prepared, 64, not args.scores_only), args.timeout
    )
    print(json.dumps(result, indent=2))
    print(
        f"\n{result['clients']} clients, {result['requests']} requests: {result['throughput_rps']} req/s, "
        f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms"
    )


if __name__ == "__main__":
    main()
