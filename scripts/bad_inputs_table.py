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
from test_bad_inputs import CASES, case_command  # noqa: E402


def main() -> None:
    print("| bad input | exit | message |\n|---|---|---|")
    for name in sorted(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            result = CliRunner().invoke(cli, case_command(name, tmp))
            line = result.output.strip().splitlines()[-1].replace(str(tmp) + "/", "").replace("|", "\\|")
            print(f"| {name} | {result.exit_code} | `{line}` |")


if __name__ == "__main__":
    main()
