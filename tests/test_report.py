"""Report rendering from fixed run directories written here by hand: golden Markdown, escaping, JSON, CSV, HTML."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from pathlib import Path

import pytest

from promptopt.errors import PromptoptError
from promptopt.data.files import write_json
from promptopt.suite.leaderboard import collect_runs, load_board
from promptopt.report import build_leaderboard, load_json, render, render_csv, render_html, render_json, render_markdown
from promptopt.pipeline.results import RunResult

GOLDEN = Path(__file__).parent / "golden"
MODEL = "smollm2-135m-instruct"
META = {"command": "promptopt leaderboard --tasks sst2,rte --seeds 3 --output runs/board", "machine": "test machine",
        "generated": "2025-01-01 00:00 UTC", "settings": {"max_eval": 100, "train.steps": 30}}  # fmt: skip
SCRIPT = "<script>alert('x')</script>"


LABELS = ["negative", "positive"]
TEMPLATES = {"sst2": ["Review: {sentence}\nSentiment:{answer}", "{sentence} It was{answer}"],
             "rte": ["{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:{answer}"]}  # fmt: skip


def predictions(score: float, n: int = 100, salt: str = "") -> list[dict]:
    """``n`` eval rows, ``round(score * n)`` of them correct; which ones is fixed by ``salt`` (a seeded shuffle)."""
    order = list(range(n))
    random.Random(salt).shuffle(order)
    right = set(order[: round(score * n)])
    rows = []
    for k in range(n):
        gold = LABELS[k % 2]
        pred = gold if k in right else LABELS[1 - k % 2]
        rows.append({"split": "eval", "id": f"dev.jsonl:{k}", "label": gold, "prediction": pred,
                     "correct": pred == gold})  # fmt: skip
    return rows


def write_run(root: Path, task: str, method: str, seed: int, score: float | None, *, params: int = 0,
              train_seconds: float = 1.0, eps: float = 40.0, memory: float = 900.0,
              prompt: str = "Review: {sentence}\nSentiment:{answer}", history: list[dict] | None = None,
              inspection: dict | None = None, error: str | None = None, model: str = MODEL,
              rows: list[dict] | None = None, flops: tuple[float, float] | None = (2.5e12, 4.0e11),
              templates: list[str] | None = None, n_train: int = 64, variant: str = "") -> Path:  # fmt: skip
    """A run directory as api.run leaves it (result.json with ``compute``, config.json, predictions.jsonl,
    history.jsonl) or as a failed suite run (error.json). ``rows`` default to :func:`predictions` of ``score``."""
    run_dir = root / model / task / method / variant / f"seed{seed}"  # variant "": the plain layout
    run_dir.mkdir(parents=True)
    if error is not None:
        write_json(run_dir / "error.json", {"error": error, "traceback": "...", "model": model, "task": task,
                                            "method": method, "seed": seed})  # fmt: skip
        return run_dir
    result = RunResult(method=method, task=task, model=model, seed=seed,
                       metrics={"eval": {"n": 100, "accuracy": score, "macro_f1": score - 0.01, "score": score}},
                       select_metrics={"score": score + 0.01}, prompt_text=prompt, trainable_parameters=params,
                       train_seconds=train_seconds, eval_seconds=2.5, eval_examples_per_second=eps,
                       peak_memory_mb=memory, output_dir=str(run_dir))  # fmt: skip
    record = result.to_json()
    if flops is not None:
        record["compute"] = {part: {"flops": f, "forward_positions": 1, "backward_positions": 0, "head_positions": 1}
                             for part, f in zip(("train", "eval"), flops)}  # fmt: skip
    write_json(run_dir / "result.json", record)
    write_json(run_dir / "config.json", {"method": method, "task": task, "seed": seed,
                                         "templates": TEMPLATES.get(task, [prompt]) if templates is None else templates,
                                         "data": {"select_split": "dev", "eval_split": "test", "train": n_train,
                                                  "select": 50, "eval": 100, "shots": None, "max_train": None}})  # fmt: skip
    rows = predictions(score, salt=f"{task}/{method}/{seed}") if rows is None else rows
    (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if history is not None:
        (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    if inspection is not None:
        write_json(run_dir / "inspect.json", inspection)
    return run_dir


def soft_inspection(token: str = " great") -> dict:
    near = [{"id": 10 + k, "token": t, "cosine": round(0.4 - 0.05 * k, 2)}
            for k, t in enumerate([token, " good", " fine", "!", " movie"])]  # fmt: skip
    return {"schema": "promptopt.interpret.inspection", "schema_version": 1, "prompt_text": "[P*2:p0] {sentence} It was{answer}",
            "model": MODEL, "embedding_norm_mean": 0.95, "projected_text": f"{token} good {{sentence}} It was{{answer}}",
            "split": "dev", "n": 100, "metric": "accuracy", "soft_score": 0.86, "projected_score": 0.61,
            "segments": [{"kind": "vectors", "name": "p0", "text": "", "ids": [], "tokens": [],
                          "vectors": [{"index": 0, "norm": 1.25, "nearest": near},
                                      {"index": 1, "norm": 0.75, "nearest": near[1:] + near[:1]}]},
                         {"kind": "field", "name": "sentence", "text": "", "ids": [], "tokens": [], "vectors": []},
                         {"kind": "text", "name": "", "text": " It was", "ids": [1, 2], "tokens": [" It", " was"],
                          "vectors": []},
                         {"kind": "answer", "name": "", "text": "", "ids": [], "tokens": [], "vectors": []}]}  # fmt: skip


def soft_history() -> list[dict]:
    records = [{"step": s, "loss": round(0.7 - 0.01 * s, 3), "lr": 0.03} for s in range(1, 31)]
    records += [{"step": s, "split": "select", "select": {"score": 0.7 + 0.005 * s, "n": 100}} for s in (10, 20, 30)]
    return records + [{"note": "not a curve point"}, {"step": "bad", "loss": 1.0}]


@pytest.fixture
def suite_dir(tmp_path) -> Path:
    """Two tasks, a manual and a soft method, three seeds; one soft run on rte failed."""
    root = tmp_path / "board"
    for seed, score in enumerate([0.80, 0.82, 0.84]):
        write_run(root, "sst2", "manual", seed, score, train_seconds=1.5)
    for seed, score in enumerate([0.85, 0.88, 0.91]):
        write_run(root, "sst2", "soft", seed, score, params=11520, train_seconds=120.0, eps=35.0, memory=1200.0,
                  prompt="[P*2:p0] {sentence} It was{answer}", history=soft_history(),
                  inspection=soft_inspection() if seed == 0 else None)  # fmt: skip
    for seed, score in enumerate([0.55, 0.53, 0.57]):
        write_run(root, "rte", "manual", seed, score, prompt="{sentence1}\nQuestion: {sentence2} True or False?\nAnswer:{answer}")
    for seed, score in enumerate([0.60, 0.62]):
        write_run(root, "rte", "soft", seed, score, params=11520, train_seconds=150.0, history=soft_history())
    write_run(root, "rte", "soft", 2, None, error="RuntimeError: loss is NaN at step 12")
    return root


def board_of(root: Path):
    return build_leaderboard(collect_runs([root]), title="Test leaderboard", meta=META)


def test_markdown_report_matches_golden_file(suite_dir):
    text = render_markdown(board_of(suite_dir))
    golden = GOLDEN / "report.md"
    if os.environ.get("PROMPTOPT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), "run with PROMPTOPT_UPDATE_GOLDEN=1 to accept the new output"


def test_rows_give_mean_and_sample_std_over_finished_seeds_and_mark_the_best_per_task(suite_dir):
    board = board_of(suite_dir)
    rows = {(r.task, r.method): r for r in board.rows}
    assert rows["sst2", "manual"].mean == pytest.approx(0.82)
    assert rows["sst2", "manual"].std == pytest.approx(0.02)
    assert (rows["rte", "soft"].ok, rows["rte", "soft"].runs, rows["rte", "soft"].mean) == (2, 3, pytest.approx(0.61))
    assert not any(r.best for r in board.rows)  # 6 points on 100 examples is within noise: tied, not best
    assert [(r.task, r.method, r.tied_with) for r in board.rows if r.tied] == [
        ("rte", "soft", ["manual"]), ("rte", "manual", ["soft"]), ("sst2", "soft", ["manual"]),
        ("sst2", "manual", ["soft"])]  # fmt: skip
    assert rows["sst2", "manual"].ci_n == 100 and rows["sst2", "manual"].train_flops == pytest.approx(2.5e12)
    assert [(r.task, r.method) for r in board.rows] == [("rte", "soft"), ("rte", "manual"), ("sst2", "soft"),
                                                        ("sst2", "manual")]  # fmt: skip
    assert [(f.task, f.method, f.seed) for f in board.failures] == [("rte", "soft", 2)]


def test_the_interval_over_seeds_is_cut_to_the_metric_s_range(tmp_path):
    for seed, score in enumerate([0.50, 0.98, 0.99]):  # one seed collapsed: mean +/- t * s / sqrt(n) passes 1
        write_run(tmp_path / "board", "sst2", "soft", seed, score)
    row = board_of(tmp_path / "board").rows[0]
    assert row.seed_low == pytest.approx(0.8233 - 0.6957, abs=1e-3) and row.seed_high == 1.0


def test_history_records_become_loss_and_selection_curves(suite_dir):
    run = next(r for r in board_of(suite_dir).runs if r.method == "soft" and r.status == "ok")
    assert run.curves["loss"][0] == [1, 0.69] and len(run.curves["loss"]) == 30
    assert run.curves["select"] == [[10, 0.75], [20, pytest.approx(0.8)], [30, 0.85]]


def test_script_payload_in_dataset_and_prompt_text_is_escaped(tmp_path):
    root = tmp_path / "board"
    inspection = soft_inspection(token=SCRIPT)
    write_run(root, f"task{SCRIPT}", f"m{SCRIPT}", 0, 0.5, prompt=f"{SCRIPT} {{sentence}}{{answer}}", params=10,
              inspection=inspection, history=soft_history(), model=f"model{SCRIPT}")  # fmt: skip
    write_run(root, f"task{SCRIPT}", "failing", 0, None, error=f"ValueError: bad row {SCRIPT}")
    write_run(root, f"task{SCRIPT}", "other", 0, 0.6, templates=[f"{SCRIPT}{{sentence}}{{answer}}"], model=f"model{SCRIPT}")
    board = build_leaderboard(collect_runs([root]), title=f"title {SCRIPT}", meta={"notes": [SCRIPT]})
    assert SCRIPT in board.rows[0].variant  # the templates differ: the variant names them
    page = render_html(board)
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 8  # title, model, task, method, prompt, error, nearest token, note
    markdown = render_markdown(board)
    assert "<script" not in markdown.lower() and "&lt;script&gt;" in markdown


def test_html_report_is_one_self_contained_file_with_its_charts(suite_dir):
    page = render_html(board_of(suite_dir))
    assert """<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">""" in page
    assert not re.search(r"\b(src|href)\s*=", page) and "http://" not in page and "https://" not in page
    titles = re.findall(r'<svg [^>]*aria-label="([^"]*)"', page)
    assert titles == [BAR_TITLE, "Score against trainable parameters",
                      "Learning curves: training loss on rte", "Learning curves: selection score on rte",
                      "Learning curves: training loss on sst2", "Learning curves: selection score on sst2"]  # fmt: skip
    assert page.count("<polyline") == 2 * 2 + 3 * 2  # rte: 2 soft seeds, sst2: 3, each a loss and a select line
    assert "nearest tokens of each vector" in page and "&#x27; great&#x27;" in page


BAR_TITLE = "Score per method and task: bars 95% intervals over seeds (over test examples for one seed)"


def test_bars_carry_the_interval_over_seeds_the_table_gives(suite_dir):
    board = board_of(suite_dir)
    row = next(r for r in board.rows if r.task == "sst2" and r.method == "soft")
    assert row.seed_low is not None and (row.seed_low, row.seed_high) != (row.ci_low, row.ci_high)
    tips = re.findall(r"<rect [^>]*><title>([^<]*)</title>", render_html(board))
    assert f"sst2 · soft: {100 * row.mean:.1f}% [{100 * row.seed_low:.1f}, {100 * row.seed_high:.1f}]" in tips


def test_json_report_round_trips_with_its_schema_version(suite_dir):
    board = board_of(suite_dir)
    text = render_json(board)
    assert json.loads(text)["schema_version"] == 3
    assert load_json(text) == board
    assert load_json(text).comparisons[0].test == "McNemar exact" and load_json(text).runs[0].ids[0] == "dev.jsonl:0"


@pytest.mark.parametrize("version", [1, 99])
def test_json_report_of_another_schema_version_is_refused(suite_dir, version):
    obj = json.loads(render_json(board_of(suite_dir)))
    obj["schema_version"] = version
    with pytest.raises(PromptoptError, match=f"field 'schema_version' is {version}; this promptopt reads 3"):
        load_json(json.dumps(obj))


def test_csv_report_has_one_line_per_task_and_method(suite_dir):
    rows = list(csv.DictReader(io.StringIO(render_csv(board_of(suite_dir)))))
    assert [(r["task"], r["method"], r["best"], r["tied_with"], r["seeds_ok"]) for r in rows] == [
        ("rte", "soft", "0", "manual", "2"), ("rte", "manual", "0", "soft", "3"), ("sst2", "soft", "0", "manual", "3"),
        ("sst2", "manual", "0", "soft", "3")]  # fmt: skip
    assert float(rows[2]["mean"]) == pytest.approx(0.88) and rows[2]["trainable_parameters"] == "11520"
    assert float(rows[2]["ci_low"]) < 0.88 < float(rows[2]["ci_high"]) and float(rows[2]["train_flops"]) == 2.5e12


def test_unknown_report_format_is_an_error_naming_the_formats(suite_dir):
    with pytest.raises(PromptoptError, match="md"):
        render(board_of(suite_dir), "pdf")


def test_report_command_renders_each_format(suite_dir, tmp_path):
    from click.testing import CliRunner

    from promptopt.cli import cli

    runner = CliRunner()
    for fmt, marker in (("md", "## Results: smollm2-135m-instruct"), ("html", "<!DOCTYPE html>"),
                        ("json", '"schema": "promptopt.suite.leaderboard"'), ("csv", "model,task,variant,method")):  # fmt: skip
        result = runner.invoke(cli, ["report", str(suite_dir), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert marker in result.output
    out = tmp_path / "r.html"
    assert runner.invoke(cli, ["report", str(suite_dir), "--format", "html", "--output", str(out)]).exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert load_board([suite_dir]).title == "promptopt leaderboard"  # no suite.json: the default title


def test_old_runs_without_predictions_or_compute_show_dashes_and_claim_nothing(tmp_path):
    root = tmp_path / "board"
    for method, score in (("manual", 0.5), ("soft", 0.9)):
        run_dir = write_run(root, "sst2", method, 0, score, flops=None)
        (run_dir / "predictions.jsonl").unlink()
    board = board_of(root)
    assert [(r.method, r.ci_low, r.train_flops, r.best, r.tied) for r in board.rows] == [
        ("soft", None, None, False, True), ("manual", None, None, False, True)]  # fmt: skip
    assert [(c.n, c.p) for c in board.comparisons] == [(0, None)]
    markdown = render_markdown(board)
    assert "| 90.0 | tied with manual |" in markdown and "no shared examples" in markdown
    assert "| – | 1.0 | – |" in markdown  # train FLOPs, train time, eval FLOPs


def test_the_template_a_soft_prompt_was_built_around_is_named(tmp_path):
    root = tmp_path / "board"
    write_run(root, "sst2", "soft", 0, 0.8, prompt="[P*20:p0]{sentence} It was{answer}")
    write_run(root, "sst2", "search", 0, 0.8, prompt="{sentence} totally rewritten{answer}")
    rows = {r.method: r for r in board_of(root).rows}
    assert rows["soft"].templates == ["{sentence} It was{answer}"] and rows["search"].templates == []
