#!/usr/bin/env python3
"""The table of bad inputs tried by tests/test_bad_inputs.py (the data and spec cases) and the one line each gives.

    .venv/bin/python scripts/bad_inputs_table.py > runs/bad_inputs.md
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from click.testing import CliRunner  # noqa: E402

from promptopt.cli import cli  # noqa: E402
from test_bad_inputs import CASES  # noqa: E402


def main() -> None:
    print("| bad input | exit | message |\n|---|---|---|")
    for name in sorted(CASES):
        text, data_name, data, args, _ = CASES[name]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            spec = tmp / "task.toml"
            (spec.write_bytes if isinstance(text, bytes) else spec.write_text)(text)
            if data_name is not None:
                target = tmp / data_name
                (target.write_bytes if isinstance(data, bytes) else target.write_text)(data)
            (tmp / "afile").write_text("")
            args = [a.replace("{tmp}", str(tmp)) for a in args]
            if "--output" not in args:
                args += ["--output", str(tmp / "run")]
            result = CliRunner().invoke(cli, ["run", "--task", str(spec), "--no-progress", *args])
            line = result.output.strip().splitlines()[-1].replace(str(tmp) + "/", "").replace("|", "\\|")
            print(f"| {name} | {result.exit_code} | `{line}` |")


if __name__ == "__main__":
    main()
