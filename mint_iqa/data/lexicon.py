"""Which ImageNet classes a word can name: WordNet 3.0's noun hierarchy over the 1,000 ImageNet classes.

ImageNet's classes are WordNet noun synsets (`n02123045` is `tabby, tabby cat`). A word names a class when
one of its first two noun senses is that class or one of its ancestors ("cat" -> the domestic and wild
cats, "vehicle" -> every vehicle class), or when any of its senses is the class itself ("palace"). Words
none of whose senses reach a class (colours, "photo", "mood") are absent: a classifier cannot say whether
an image shows them.

The table is built once from the Debian package `wordnet-base` (WordNet licence, Princeton University)
and timm's list of the ImageNet synsets, and committed as `mint_iqa/models/imagenet_lexicon.json`
(`mint-iqa data lexicon` rebuilds it; a test checks the two agree).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from mint_iqa.data.references import DEBIAN, _debian_files
from mint_iqa.io import write_text

WORDNET = f"{DEBIAN}wordnet-base=1:3.0-37"
FILES = ("data.noun", "index.noun", "noun.exc")
SENSES = 2  # a word's first senses that count (WordNet orders them by frequency in tagged text)
LEXICON = Path(__file__).resolve().parents[1] / "models" / "imagenet_lexicon.json"


def imagenet_synsets() -> list[str]:
    """The 1,000 ImageNet-1k synset ids in class-index order (timm's copy of the list)."""
    import timm

    path = Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt"
    return path.read_text().split()


def _hypernyms(data_noun: str) -> dict[str, list[str]]:
    """Synset offset -> its hypernyms (class and instance), from WordNet's `data.noun`."""
    parents = {}
    for line in data_noun.splitlines():
        if line.startswith(" "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        words = int(fields[3], 16)
        at = 4 + 2 * words
        pointers = fields[at + 1 : at + 1 + 4 * int(fields[at])]
        parents[fields[0]] = [
            pointers[i + 1] for i in range(0, len(pointers), 4) if pointers[i] in ("@", "@i")
        ]
    return parents


def build(files: dict[str, str], synsets: list[str]) -> dict:
    """The lexicon: `classes` (synset ids by index), `words` (lemma -> class indices), `plurals` (irregular
    plural -> lemma, for lemmas in `words`)."""
    parents, index_of = _hypernyms(files["data.noun"]), {synset: i for i, synset in enumerate(synsets)}
    covers: dict[str, set[int]] = defaultdict(set)
    for index, synset in enumerate(synsets):
        stack, seen = [synset.removeprefix("n")], set()
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                covers[node].add(index)
                stack.extend(parents.get(node, []))
    words = {}
    for line in files["index.noun"].splitlines():
        if line.startswith(" "):
            continue
        fields = line.split()
        senses = fields[-int(fields[2]) :]
        named = [s for s in senses[SENSES:] if "n" + s in index_of]  # a later sense that is a class itself
        classes = set().union(*(covers.get(s, set()) for s in senses[:SENSES] + named))
        if classes:
            words[fields[0].replace("_", " ")] = sorted(classes)
    plurals = {}
    for line in files["noun.exc"].splitlines():
        plural, *lemmas = line.split()
        lemma = next((lemma for lemma in lemmas if lemma.replace("_", " ") in words), None)
        if lemma:
            plurals[plural.replace("_", " ")] = lemma.replace("_", " ")
    return {"source": WORDNET, "classes": synsets, "words": words, "plurals": plurals}


def write_lexicon(path: Path = LEXICON) -> Path:
    """Build the lexicon from the pinned WordNet package and write it (atomically) to `path`."""
    found = _debian_files(WORDNET, frozenset(f"usr/share/wordnet/{name}" for name in FILES))
    files = {name: found[f"usr/share/wordnet/{name}"].decode("utf-8") for name in FILES}
    text = json.dumps(build(files, imagenet_synsets()), separators=(",", ":"), sort_keys=True)
    write_text(path, text + "\n")
    return path
