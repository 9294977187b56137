"""Three tiny tasks with different inputs and label words, written into a test's tmp_path (for multi-task and
continual tests). Their texts come from tiny_reviews, so the tiny test tokenizers know their words."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY_REVIEWS

SPECS = {
    "alpha": ('inputs = ["text"]\ntemplates = ["Review: {text}\\nSentiment:{answer}"]\n'
              '[label_words]\npositive = ["positive"]\nnegative = ["negative"]\n'),
    "beta": ('inputs = ["sentence"]\ntemplates = ["{sentence} Question: yes or no? Answer:{answer}"]\n'
             '[label_words]\nyes = ["yes"]\nno = ["no"]\n'),
    "gamma": ('inputs = ["premise", "hypothesis"]\ntemplates = ["{premise} Question: {hypothesis} true or false? '
              'Answer:{answer}"]\n[label_words]\ntrue = ["true"]\nfalse = ["false"]\n'),
}
SIZES = {"train": 24, "dev": 8, "test": 10}


def _rows(name: str, reviews: list[dict]) -> list[dict]:
    if name == "alpha":
        return [{"text": r["text"], "label": r["label"]} for r in reviews]
    if name == "beta":  # does the review mention "the"? a rule the model can only learn from the data
        return [{"sentence": r["text"], "label": "yes" if " the " in f" {r['text'].lower()} " else "no"}
                for r in reviews]  # fmt: skip
    pairs = zip(reviews, reviews[1:] + reviews[:1])
    return [{"premise": a["text"], "hypothesis": b["text"], "label": "true" if a["label"] == b["label"] else "false"}
            for a, b in pairs]  # fmt: skip


def write_tiny_tasks(directory: Path) -> dict[str, str]:
    """Write the spec and data of each task under ``directory``; returns task name -> spec path."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, body in SPECS.items():
        head = f'name = "{name}"\nkind = "classification"\nlabel = "label"\nmetric = "accuracy"\n'
        splits = "".join(f'[splits.{s}]\npath = "{{spec_dir}}/{name}_{s}.jsonl"\n' for s in SIZES)
        (directory / f"{name}.toml").write_text(head + body + splits)
        for split, n in SIZES.items():
            source = "train" if split == "train" else "test" if split == "test" else "dev"
            reviews = [json.loads(line) for line in (TINY_REVIEWS / f"{source}.jsonl").read_text().splitlines()][:n]
            rows = _rows(name, reviews)
            (directory / f"{name}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[name] = str(directory / f"{name}.toml")
    return out
