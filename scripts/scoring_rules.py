"""Dev accuracy of each task's first template under every scoring rule, embedded model, float32 (issue 12).

    nice -n 10 .venv/bin/python scripts/scoring_rules.py runs/scoring_rules   # resumable: done cells are kept

Writes OUT/results.json: {task: {rule: {"accuracy": ..., "n": ..., "template": ...}}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from promptopt.data.files import write_json
from promptopt.data.prompt import Prompt
from promptopt.engine import Scorer, load_model
from promptopt.plugins import get_task

TASKS = ["sst2", "rte"]
RULES = ["loglik", "norm_token", "norm_char", "calibrated"]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    lm = load_model(dtype="float32")
    for name in TASKS:
        task = get_task(name)
        dev = task.load_split("dev")
        template = task.templates[0]
        for rule in RULES:
            if rule in results.get(name, {}):
                continue
            result = Scorer(lm, task, batch_size=16, scoring=rule).evaluate(Prompt.from_template(template), dev)
            results.setdefault(name, {})[rule] = {"accuracy": result.metrics["accuracy"], "n": result.n,
                                                  "template": template, "seconds": round(result.seconds, 1)}  # fmt: skip
            write_json(path, results)
            print(name, rule, results[name][rule], flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/scoring_rules"))
