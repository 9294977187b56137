"""Write one task spec per LAMA T-REx relation into datasets/lama_trex/ (run once; the specs are committed).

Usage: python scripts/make_lama_specs.py ../shared/datasets/lama_trex
The facts are split 40/20/40 into train/dev/test with seed 0 (LAMA ships no split).
"""

import json
import sys
from pathlib import Path


def to_template(lama: str) -> str:
    return lama.replace("{", "{{").replace("}", "}}").replace("[X]", "{sub_label}").replace("[Y]", "{answer}")


def main(source: str) -> None:
    src = Path(source)
    out = Path(__file__).resolve().parent.parent / "datasets" / "lama_trex"
    out.mkdir(parents=True, exist_ok=True)
    for line in (src / "relations.jsonl").read_text().splitlines():
        rel = json.loads(line)
        rid = rel["relation"]
        templates = [to_template(rel["template"])]
        pararel = src / "pararel_patterns" / f"{rid}.jsonl"
        if pararel.exists():
            for p in pararel.read_text().splitlines()[:3]:
                t = to_template(json.loads(p)["pattern"])
                if t not in templates:
                    templates.append(t)
        lines = [
            f'name = "lama-{rid}"',
            'kind = "fact_retrieval"',
            f"description = {json.dumps('LAMA T-REx ' + rid + ': ' + rel['label'])}",
            'inputs = ["sub_label"]',
            'label = "obj_label"',
            'metric = "p_at_1"',
            "# the first template is LAMA's manual one; the others are ParaRel paraphrases",
            "templates = [" + ", ".join(json.dumps(t) for t in templates) + "]",
            "",
            "[split_from]",
            f'path = "{{data_root}}/lama_trex/triples/{rid}.jsonl"',
            "seed = 0",
            "fractions = { train = 0.4, dev = 0.2, test = 0.4 }",
            "",
        ]
        (out / f"{rid}.toml").write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
