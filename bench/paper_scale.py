"""The `paper` preset at full size on one GPU: what a training step, a scoring call and an explanation cost.

    python bench/paper_scale.py [--out bench/results]    # a CUDA machine; ~5 minutes on one H200
    python bench/paper_scale.py --tiny                    # the same code, small configs, CPU (a script check)

InstructBLIP-Vicuna-7B's architecture (EVA ViT-g/14 at 224 px, 39 blocks; Q-Former, 12 layers, 32 queries;
Vicuna-7B) with random weights, since no hub is reachable: timings do not depend on the values. Every step
goes through the project's own code:

1. `load`: the stage-1 tensors (vision, Q-Former, queries) written as a safetensors checkpoint with an
   InstructBLIP `config.json`, read back by `build_scorer` exactly as a downloaded checkpoint is;
2. `train scorer`: `mint_iqa.train.engine.fit` (DeepSpeed, `infra/deepspeed/zero2_bf16.json`, fix_rate 0.6,
   weight average on) with the scorer's own loss (`ScorerTask.loss`) on float32 batches from the host;
3. `score`: `Scorer.forward_batch` in bf16;
4. `train explainer`: `fit` again over the frozen scorer and the frozen language model (`freeze_lm`);
5. `explain`: `explain_batch`, greedy, to `max_answer_tokens`, with the level and reason constraints and
   without them (random weights rarely stop early, so every answer runs to the limit).

Prints a table and writes `paper_scale.md` / `paper_scale.json` to `--out`. A step that fails is reported
on its row and the others still run.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.paper_checkpoint import ANSWER, PROMPTS, sizes, write_checkpoint  # noqa: E402
from mint_iqa.config import TrainConfig  # noqa: E402
from mint_iqa.models.explaining import Texts  # noqa: E402


class Counting(Texts):
    """`Texts` that counts the tokens it is asked to decode (the generated answers, padding left out)."""

    generated = 0

    def decode(self, ids: torch.Tensor) -> list[str]:
        self.generated += int((ids != self.lm_tok.pad_id).sum())
        return super().decode(ids)


class Timed:
    """A `fit` task of fixed-size random batches; records when each step starts (after the device is idle)."""

    def __init__(self, make_batch, loss, steps: int, device: str):
        self.make_batch, self._loss, self.steps, self.device, self.starts = (
            make_batch,
            loss,
            steps,
            device,
            [],
        )

    def batches(self, epoch: int, start_step: int):
        for _ in range(start_step, self.steps):
            yield self.make_batch()

    def loss(self, model, batch):
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.starts.append(time.perf_counter())
        return self._loss(model, batch)

    def validate(self, model):
        return {"score": 0.0}

    def seconds_per_step(self) -> float:
        gaps = np.diff(self.starts)[2:]  # the first steps allocate and warm up
        return float(np.median(gaps))


def train_config(steps: int, batch: int, device: str, zero: int = 2) -> TrainConfig:
    """ZeRO-2: what `infra/deepspeed/launch.sh ... zero2` trains with (bf16 and ZeRO-2 from its JSON), on CPU
    too; ZeRO-0: the same in bf16 without the JSON."""
    return TrainConfig(
        epochs=1,
        steps_per_epoch=steps,
        batch_size=batch,
        warmup_steps=2,
        lr=1e-5,
        fix_rate=0.6,
        threads=2 if device == "cpu" else 8,
        bf16=True,
        zero_stage=zero,
        deepspeed_extra=ROOT / "infra/deepspeed/zero2_bf16.json" if zero == 2 else None,
    )


def gib(folder: Path) -> float:
    """Size of a DeepSpeed checkpoint folder."""
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30, 2)


def peak_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda" else None


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# long: one GPU protocol read top to bottom: each step is a closure that `row` times and records
def run(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from mint_iqa.inference.scoring import Scorer
    from mint_iqa.models.explaining import explain_batch
    from mint_iqa.models.factory import build_explainer, build_scorer, explainer_config, preset_config
    from mint_iqa.models.tensors import to_device
    from mint_iqa.models.text import segmenter
    from mint_iqa.train.engine import fit
    from mint_iqa.train.scorer import ScorerTask

    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    arch, rows = sizes(args.tiny), []
    size = arch["vision"].image_size

    def row(step: str, fn) -> Any:
        reset_peak(device)
        started = time.perf_counter()
        try:
            result, record = fn()
            record = {
                "step": step,
                **record,
                "wall_s": round(time.perf_counter() - started, 1),
                "peak_gib": peak_gib(device),
            }
        except Exception as exc:  # one failing step must not hide the others' numbers
            traceback.print_exc()
            result, record = None, {"step": step, "error": f"{type(exc).__name__}: {exc}"[:300]}
        rows.append(record)
        print(json.dumps(record), flush=True)
        return result

    source = work / "instructblip"
    row("write checkpoint", lambda: (write_checkpoint(source, arch, device), {}))

    def load():
        with torch.device(
            device
        ):  # random initialisation before the load: seconds on a GPU, minutes on a CPU
            scorer, tok = build_scorer(preset_config("paper", {"vision": {"pretrained": str(source)}}))
        n = sum(p.numel() for p in scorer.parameters())
        return (scorer, tok), {"params_M": round(n / 1e6, 1)}

    scorer, tokenizer = row("load stage 1 (build_scorer)", load)
    task = ScorerTask.__new__(ScorerTask)  # its loss, without the proxy data it would otherwise load
    task.cfg, task.tokenizer, task.segment = TrainConfig(), tokenizer, segmenter("rules")
    rng = np.random.default_rng(0)

    def scorer_batch(b: int) -> dict[str, Any]:
        prompts = [PROMPTS[i % 4] for i in range(b)]
        return task.with_tokens(
            {"images": torch.rand(b, 3, size, size), "prompts": prompts, "labels": torch.rand(b, 3)}
        )

    for zero, b in [(2, b) for b in arch["batches"]] + [(0, arch["batches"][-1])]:

        def train_scorer(b=b, zero=zero):
            net = copy.deepcopy(scorer)  # DeepSpeed casts its model to bf16 in place
            net.vision.freeze(0.6)
            trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
            timed = Timed(lambda: scorer_batch(b), task.loss, arch["steps"], device)
            fit(net, timed, train_config(arch["steps"], b, device, zero), work / "out", work / f"ckpt{b}")
            ckpt = gib(work / f"ckpt{b}")
            shutil.rmtree(work / f"ckpt{b}")
            s = timed.seconds_per_step()
            return None, {
                "batch": b,
                "trainable_M": round(trainable / 1e6, 1),
                "ckpt_gib": ckpt,
                "s_per_step": round(s, 3),
                "images_per_s": round(b / s, 1),
            }

        row(f"train scorer, ZeRO-{zero} bf16, batch {b}", train_scorer)

    def forward_backward(b: int = arch["batches"][-1]):
        """The model's own work in a step (no engine, no optimizer): what the rows above add to it is
        overhead."""
        net = copy.deepcopy(scorer).to(torch.bfloat16)
        net.vision.freeze(0.6)
        timed = Timed(lambda: scorer_batch(b), task.loss, arch["steps"], device)
        for batch in timed.batches(0, 0):
            timed.loss(net, to_device(batch, torch.device(device)))[0].backward()
            net.zero_grad(set_to_none=True)
        timed.loss(net, to_device(batch, torch.device(device)))  # closes the last step's interval
        s = timed.seconds_per_step()
        return None, {"batch": b, "s_per_step": round(s, 3), "images_per_s": round(b / s, 1)}

    row(f"forward + backward only (no engine), batch {arch['batches'][-1]}", forward_backward)

    dtype = torch.bfloat16
    scorer = scorer.to(device=device, dtype=dtype).eval()
    fast = Scorer(scorer, tokenizer, torch.device(device), dtype=dtype)
    for b in arch["score_batches"]:

        def score(b=b):
            images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(b)]
            prompts = [PROMPTS[i % 4] for i in range(b)]
            fast.forward_batch(images, prompts)
            reps, started = 5, time.perf_counter()
            for _ in range(reps):
                fast.forward_batch(images, prompts)
            s = (time.perf_counter() - started) / reps
            return None, {"batch": b, "s_per_step": round(s, 4), "images_per_s": round(b / s, 1)}

        row(f"score (forward_batch, {str(dtype).removeprefix('torch.')}), batch {b}", score)

    def build_stage2():
        with torch.device(device):  # initialised where it runs: 7B random weights on a CPU take minutes
            explainer, lm_tok = build_explainer(
                scorer, tokenizer, explainer_config("paper"), load_weights=False
            )
        explainer = explainer.to(dtype)
        total = sum(p.numel() for p in explainer.parameters())
        trainable = sum(p.numel() for p in explainer.parameters() if p.requires_grad)
        return (explainer, lm_tok), {
            "params_M": round(total / 1e6, 1),
            "trainable_M": round(trainable / 1e6, 1),
        }

    built = row("build stage 2 (build_explainer)", build_stage2)
    if built is None:
        return rows
    explainer, lm_tok = built
    texts = Counting(tokenizer, lm_tok, segmenter("rules"), explainer.config)
    print(f"language-model tokenizer: {lm_tok.vocab_size} pieces", flush=True)
    b = arch["explain_batch"]

    def explainer_batch() -> dict[str, Any]:
        enc = texts.encode(
            [PROMPTS[i % 4] for i in range(b)], ["What is the quality of the image?"] * b, [ANSWER] * b
        )
        return {"images": torch.rand(b, 3, size, size), **enc}

    def explainer_loss(model: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        loss = model(**batch).loss  # as ExplainerTask.loss
        return loss, {"loss": loss.item()}

    def train_explainer():
        timed = Timed(explainer_batch, explainer_loss, arch["steps"], device)
        fit(explainer, timed, train_config(arch["steps"], b, device), work / "out2", work / "ckpt-explainer")
        ckpt = gib(work / "ckpt-explainer")
        shutil.rmtree(work / "ckpt-explainer")
        s = timed.seconds_per_step()
        return None, {
            "batch": b,
            "ckpt_gib": ckpt,
            "s_per_step": round(s, 3),
            "images_per_s": round(b / s, 1),
        }

    row(f"train explainer, frozen LM, batch {b}", train_explainer)

    images = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(b)]
    prompts = [PROMPTS[i % 4] for i in range(b)]
    question = ["Evaluate the image's quality, authenticity and correspondence with the prompt."] * b
    explainer.eval()
    explain_batch(explainer, texts, images, prompts, question)  # warm-up at the timed batch size

    def explain(constrained: bool):
        """The median of three timed batches, with or without the decoding constraints."""
        cfg = explainer.config
        cfg.constrain_levels = cfg.constrain_reasons = constrained
        times, tokens = [], []
        for _ in range(3):
            texts.generated, started = 0, time.perf_counter()
            explain_batch(explainer, texts, images, prompts, question)
            times.append(time.perf_counter() - started)
            tokens.append(texts.generated)
        s = float(np.median(times))
        return None, {
            "batch": b,
            "s_per_step": round(s, 2),
            "images_per_s": round(b / s, 2),
            "tokens_per_s": round(float(np.median(tokens)) / s, 1),
        }

    for constrained in (False, True):
        row(
            f"explain (greedy, {'' if constrained else 'un'}constrained), batch {b}",
            lambda constrained=constrained: explain(constrained),
        )
    return rows


def table(rows: list[dict[str, Any]], device: str) -> str:
    cols = [
        "step",
        "batch",
        "params_M",
        "trainable_M",
        "ckpt_gib",
        "s_per_step",
        "images_per_s",
        "tokens_per_s",
        "peak_gib",
        "wall_s",
        "error",
    ]
    cols = [c for c in cols if any(c in r for r in rows)]
    lines = [
        f"Paper preset at full size, random weights, on {device}",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="small configs on CPU: checks the script, times nothing"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="paper-scale-") as work:
        rows = run(args, Path(work))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny else "cpu (--tiny)"
    text = table(rows, device)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "paper_scale_tiny" if args.tiny else "paper_scale"
    (args.out / f"{name}.md").write_text(text)
    (args.out / f"{name}.json").write_text(json.dumps({"device": device, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
