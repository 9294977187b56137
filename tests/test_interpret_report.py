"""The inspection section of the reports shows ablation, logit lens, the readable prompt, the self-description probe
and the waywardness verdict of a version-2 inspection record."""

from __future__ import annotations

from promptopt.data.files import read_json, write_json
from promptopt.interpret.inspection import InspectOptions, inspect_run
from promptopt.pipeline.results import RunResult
from promptopt.report import render_html, render_markdown
from promptopt.suite.leaderboard import load_board

from test_inspect import write_run_dir


def test_reports_show_every_part_of_a_full_inspection(tmp_path, tiny_lms):
    lm = tiny_lms["causal"]
    run_dir = write_run_dir(tmp_path, lm, lm.name)
    write_json(run_dir / "config.json", {**read_json(run_dir / "config.json"),
                                         "train": {"steps": 2, "batch_size": 4, "lr": 0.01, "eval_every": 0}})  # fmt: skip
    ins = inspect_run(run_dir, lm=lm, options=InspectOptions(distill_steps=2, distill_train=8, wayward=True,
                                                             wayward_steps=1, eval_split="test"))  # fmt: skip
    result = RunResult(method="fixture", task="tiny-reviews", model=lm.name, seed=3, output_dir=str(run_dir),
                       metrics={"eval": {"n": 60, "accuracy": 0.5, "score": 0.5}}, prompt_text=ins.prompt_text)  # fmt: skip
    write_json(run_dir / "result.json", result.to_json())
    board = load_board([str(tmp_path)])
    page, markdown = render_html(board), render_markdown(board)
    top = ins.ranking("remove")[0]
    for text in (page, markdown):
        assert "Readable (%)" in text and "Readable gap (points)" in text
        assert f"Largest drops when a vector is ablated (remove), in points: {top.segment}[{top.index}]" in text
        assert "lens" in text.lower() and "L2" in text and "Self-description (anecdotal)" in text
        assert "Waywardness (lambda 1.0, 1 steps)" in text and "On test (n=60): soft" in text
    assert "its ablation and its logit lens" in page and "Drop, mean (points)" in page
    assert ins.wayward.sentence.split(" (")[0] in markdown
