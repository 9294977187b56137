import json

from click.testing import CliRunner

from promptopt.cli import cli

from conftest import REPO

TASK = str(REPO / "datasets" / "tiny_reviews" / "task.toml")


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_writes_a_complete_run_directory(tiny_model_dirs, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--method", "manual", "--task", TASK, "--model", str(tiny_model_dirs["causal"]),
                    "--max-eval", "12", "--output", str(out), "--no-progress",
                    "-t", "Review: {text}\\nSentiment:{answer}", "-t", "{text} It was{answer}")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "eval:" in result.output and str(out) in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint", "config.json", "history.jsonl", "metrics.json", "predictions.jsonl", "prompt", "result.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["templates"] == ["Review: {text}\nSentiment:{answer}", "{text} It was{answer}"]
    data = config["data"]
    assert {k: data[k] for k in ("select_split", "eval_split", "select", "eval", "train")} == {
        "select_split": "dev", "eval_split": "test", "select": 12, "eval": 12, "train": 0}
    assert set(data["ids"]) == {"train", "select", "eval"} and data["ids"]["eval"].startswith("12:")
    assert config["fingerprint"]["data"]["eval"] == data["ids"]["eval"]
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 12
    res = json.loads((out / "result.json").read_text())
    assert res["status"] == "ok" and res["metrics"]["eval"]["n"] == 12 and res["schema_version"] == 1


def test_run_refuses_to_overwrite_a_finished_run(tiny_model_dirs, tmp_path):
    args = ["run", "--task", TASK, "--model", str(tiny_model_dirs["masked"]), "--max-eval", "4",
            "--output", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 2 and "holds a finished run" in again.output and "Traceback" not in again.output
    assert invoke(*args, "--overwrite").exit_code == 0


def test_bad_template_on_the_command_line_is_one_clear_error(tiny_model_dirs, tmp_path):
    result = invoke("run", "--task", TASK, "--model", str(tiny_model_dirs["causal"]), "-t", "{text} no answer",
                    "--output", str(tmp_path / "r"), "--no-progress")  # fmt: skip
    assert result.exit_code == 2
    assert "exactly one {answer}" in result.output and "Traceback" not in result.output


def test_bad_task_file_error_names_file_and_field(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\ninputs = ["x"]\ntemplates = ["{x}{answer}"]\nlabel_words = { a = "y" }\n')
    result = invoke("run", "--task", str(spec), "--output", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert f"{spec}:4: field 'label_words'" in result.output


def test_bad_method_option_names_the_field_and_allowed_values(tiny_model_dirs, tmp_path):
    result = invoke("run", "--task", TASK, "-o", "colour=red", "--output", str(tmp_path / "r"))
    assert result.exit_code == 2 and "ManualConfig has no option 'colour'" in result.output
    result = invoke("run", "--task", TASK, "--steps", "zero", "--output", str(tmp_path / "r"))
    assert result.exit_code == 2 and "TrainConfig.steps" in result.output


def test_methods_lists_each_method_with_its_plugin():
    result = invoke("methods", "--json")
    rows = {r["method"]: r for r in json.loads(result.output)}
    assert rows["manual"]["plugin"] == "manual"
    assert rows["manual"]["options"][0]["name"] == "label_words"


def test_tasks_lists_bundled_and_shared_tasks():
    out = invoke("tasks").output
    assert "tiny-reviews" in out and "sst2" in out and "lama-P19" in out


def test_eval_rescoring_a_saved_prompt_matches_the_run(tiny_model_dirs, tmp_path):
    out = tmp_path / "run"
    invoke("run", "--task", TASK, "--model", str(tiny_model_dirs["causal"]), "--output", str(out), "--no-progress",
           "--eval-split", "dev")  # fmt: skip
    run_acc = json.loads((out / "result.json").read_text())["metrics"]["eval"]["accuracy"]
    result = invoke("eval", "--prompt", str(out / "prompt"), "--task", TASK, "--split", "dev",
                    "--model", str(tiny_model_dirs["causal"]))  # fmt: skip
    assert result.exit_code == 0
    assert json.loads(result.stdout)["accuracy"] == run_acc


def test_label_search_flag_searches_label_words_for_the_manual_method(tiny_model_dirs, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--task", TASK, "--model", str(tiny_model_dirs["causal"]), "--max-train", "16",
                    "--max-eval", "8", "--output", str(out), "--no-progress", "--label-search", "--label-k", "2",
                    "--label-candidates", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    search = config["label_search"]
    assert set(search["found"]) == {"negative", "positive"}
    assert all(len(ws) == 2 for ws in search["found"].values())  # the task's verbalizer has one word each
    assert search["k"] == 2 and search["fitted_on"] == 16 and search["candidates"] == 0
    # kept only if they score at least as well as the task's words on the selection split
    scores = search["select_score"]
    assert search["kept"] == ("found" if scores["found"] >= scores["given"] else "given")
    assert config["label_words"] == (search["found"] if search["kept"] == "found" else search["task_label_words"])
    assert f"labels:    {config['label_words']}" in result.output
    prompt = json.loads((out / "prompt" / "prompt.json").read_text())
    assert prompt["label_words"] == config["label_words"]


def test_label_search_on_a_fact_retrieval_task_is_one_clear_error(tmp_path):
    spec = tmp_path / "facts.toml"
    (tmp_path / "facts.jsonl").write_text('{"sub": "Paris", "obj": "France"}\n')
    spec.write_text('name = "facts"\nkind = "fact_retrieval"\ninputs = ["sub"]\nlabel = "obj"\n'
                    'templates = ["{sub} is in {answer} ."]\n[splits.train]\npath = "{spec_dir}/facts.jsonl"\n'
                    '[splits.test]\npath = "{spec_dir}/facts.jsonl"\n')  # fmt: skip
    result = invoke("run", "--task", str(spec), "--label-search", "--output", str(tmp_path / "r"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--label-search needs a classification task; task 'facts' is fact_retrieval" in result.output


def test_run_flags_are_generated_from_run_options_and_cannot_drift():
    import dataclasses

    from promptopt.cli import cli
    from promptopt.pipeline.runner import RunOptions

    params = {p.name: p for p in cli.commands["run"].params}
    for f in dataclasses.fields(RunOptions):
        if f.name in ("templates", "method_options", "train"):
            continue  # -t/--templates-file, -o KEY=VALUE and one flag per training option
        param = params.get(f.name) or params.get(f"no_{f.name}")
        assert param is not None, f"RunOptions.{f.name} has no 'promptopt run' flag"
        assert f.metadata["help"] in param.help or param.help == f.metadata.get("no_help"), f.name
    assert "--eval-batch-size" in params["batch_size"].opts and "-m" in params["method"].opts
