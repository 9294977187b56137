"""Run a ``promptopt`` command and report how much wall-clock and CPU time its optimisation took.

On a machine shared with other jobs the wall-clock time of a run says more about the neighbours than about the
run; the CPU time this process spent (``time.process_time``, all its threads) does not. The clock is a plugin:
it starts at the ``run_start`` hook (model, task and data loaded) and stops at the last ``evaluation`` hook on the
selection split (the end of training, selection included), so loading and the final report on the eval split are
not counted. Arguments are exactly those of ``promptopt``::

    python benchmarks/time_run.py run -m soft --task sst2 --select-split holdout:400 --eval-split dev ...

Prints the run's own output, then one JSON line with the times, and writes it to ``RUN/timing.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from promptopt import hookimpl


class Clock:
    def __init__(self):
        self.start = self.end = None
        self.run = None

    @hookimpl
    def run_start(self, run):
        self.run = run
        self.start = (time.perf_counter(), time.process_time())

    @hookimpl
    def evaluation(self, run, step, split, metrics):
        if split == "select":
            self.end = (time.perf_counter(), time.process_time())

    @hookimpl
    def training_step(self, run, step, loss, lr):
        self.end = (time.perf_counter(), time.process_time())


def main():
    from promptopt.cli import cli
    from promptopt.data.files import write_json
    from promptopt.plugins import make_plugin_manager, reset_plugin_manager

    clock = Clock()
    reset_plugin_manager(make_plugin_manager(extra_plugins=[clock]))
    cli.main(args=sys.argv[1:], prog_name="promptopt", standalone_mode=False)
    if clock.start is None or clock.end is None:
        raise SystemExit("the command ran no optimisation to time")
    timing = {
        "optimise_wall_seconds": clock.end[0] - clock.start[0],
        "optimise_cpu_seconds": clock.end[1] - clock.start[1],
        "load_average_at_end": os.getloadavg(),
        "command": "promptopt " + " ".join(sys.argv[1:]),
    }
    write_json(clock.run.output_dir / "timing.json", timing)
    print(json.dumps(timing))


if __name__ == "__main__":
    main()
