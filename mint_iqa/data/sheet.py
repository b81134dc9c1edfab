"""Contact sheet: one reference crop under every distortion type (rows) at every level (columns), plus
the correspondence ladder's prompts, so a person can judge the degradations at a glance."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mint_iqa.config import LEVELS, Params
from mint_iqa.data import degradations
from mint_iqa.data.prompts import make_prompt
from mint_iqa.data.references import load_references
from mint_iqa.data.synth import Synthesiser
from mint_iqa.io import atomic_write

CELL, LABEL_W, HEADER_H = 160, 150, 24


def contact_sheet(
    params: Params, reference: str = "astronaut", out: str | Path = "plots/degradations.png"
) -> Path:
    refs = load_references(params.data.raw_dir)
    ids = [ref.id for ref, _ in refs]
    if reference not in ids:
        raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(ids)}")
    index = ids.index(reference)
    synth = Synthesiser(refs, params.prepare)
    base = synth.crop(index, np.random.default_rng([params.seed, index]))
    rows = [(family, name) for family in degradations.REGISTRY for name in getattr(params.prepare, family)]
    sheet = Image.new("RGB", (LABEL_W + CELL * (LEVELS + 1), HEADER_H + CELL * (len(rows) + 1)), "white")
    draw = ImageDraw.Draw(sheet)
    for level in range(LEVELS + 1):
        draw.text(
            (LABEL_W + level * CELL + 6, 6), "pristine" if level == 0 else f"level {level}", fill="black"
        )
    for r, (family, name) in enumerate(rows):
        y = HEADER_H + r * CELL
        draw.text((6, y + CELL // 2 - 12), f"{family}\n{name}", fill="black")
        for level in range(LEVELS + 1):
            img = (
                base
                if level == 0
                else degradations.apply(
                    base, family, name, level, getattr(params.prepare, family), np.random.default_rng([level])
                )
            )
            thumb = Image.fromarray((img * 255 + 0.5).astype(np.uint8)).resize((CELL - 8, CELL - 8))
            sheet.paste(thumb, (LABEL_W + level * CELL + 4, y + 4))
    y = HEADER_H + len(rows) * CELL
    draw.text((6, y + CELL // 2 - 12), "correspondence\nprompt ladder", fill="black")
    for level in range(LEVELS + 1):
        prompt = make_prompt(synth.refs[index], synth.refs, level, np.random.default_rng([level])).text
        draw.text((LABEL_W + level * CELL + 4, y + 4), textwrap.fill(prompt, 24), fill="black")
    out = Path(out)
    with atomic_write(out, "wb") as fh:
        sheet.save(fh, format="PNG")
    return out
