"""Bad inputs through the CLI: each gives exit status 2, one line naming the file (and line and field), no traceback,
and no result.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.cli import cli

HEAD = 'name = "t"\ninputs = ["text"]\ntemplates = ["{text} It was{answer}"]\n'
WORDS = '[label_words]\nneg = ["negative"]\npos = ["positive"]\n'
ROWS = '{"text": "good film", "label": "pos"}\n{"text": "bad film", "label": "neg"}\n'


def spec(data_name="d.jsonl", extra="", words=WORDS, fmt=""):
    split = f'path = "{{spec_dir}}/{data_name}"\n{fmt}'
    return HEAD + extra + words + "".join(f"[splits.{s}]\n{split}" for s in ("train", "dev", "test"))


# name -> (spec text or bytes, data file name, data text or bytes, extra CLI args, text the message must hold)
CASES = {
    "spec not utf-8": (b'name = "t\xff"\n', None, None, [], "not UTF-8"),
    "spec not toml": ("name = \n", None, None, [], "not valid TOML"),
    "spec unknown key": (spec(extra='colour = "red"\n'), "d.jsonl", ROWS, [], "field 'colour'"),
    "spec missing inputs": ('name = "t"\ntemplates = ["{x}{answer}"]\n', None, None, [], "missing required key 'inputs'"),
    "spec bad name": (spec().replace('"t"', '"a b"', 1), "d.jsonl", ROWS, [], "field 'name'"),
    "spec bad kind": (spec(extra='kind = "regression"\n'), "d.jsonl", ROWS, [], "field 'kind'"),
    "spec bad metric": (spec(extra='metric = "bleu"\n'), "d.jsonl", ROWS, [], "field 'metric'"),
    "spec one label": (spec(words='[label_words]\npos = "positive"\n'), "d.jsonl", ROWS, [], "field 'label_words'"),
    "spec same word two classes": (spec(words='[label_words]\nneg = "good"\npos = "good"\n'), "d.jsonl", ROWS, [],
                                   "also a label word"),
    "spec empty label word": (spec(words='[label_words]\nneg = ""\npos = "positive"\n'), "d.jsonl", ROWS, [],
                              "field 'label_words.neg'"),
    "spec template no answer": (spec().replace("{answer}", ""), "d.jsonl", ROWS, [], "exactly one {answer}"),
    "spec template unknown field": (spec().replace("{text}", "{body}", 1), "d.jsonl", ROWS, [], "not in inputs"),
    "spec template unclosed brace": (spec().replace("{text}", "{text", 1), "d.jsonl", ROWS, [], "is not a field name"),
    "spec unknown split": (spec() + '[splits.valid]\npath = "x"\n', "d.jsonl", ROWS, [], "field 'splits.valid'"),
    "spec unknown format": (spec(fmt='format = "xml"\n'), "d.jsonl", ROWS, [], "format 'xml'"),
    "spec no splits": (HEAD + WORDS, None, None, [], "needs 'splits'"),
    "spec negative min_words": (spec(fmt="min_words = -1\n"), "d.jsonl", ROWS, [], "min_words"),
    "data file missing": (spec(data_name="nope.jsonl"), None, None, [], "does not exist"),
    "data not utf-8": (spec(), "d.jsonl", b'{"text": "caf\xe9", "label": "pos"}\n', [], "d.jsonl:1"),
    "jsonl bad json": (spec(), "d.jsonl", ROWS + "{not json\n", [], "d.jsonl:3: not valid JSON"),
    "jsonl not an object": (spec(), "d.jsonl", ROWS + "[1, 2]\n", [], "d.jsonl:3: each line must be a JSON object"),
    "jsonl unknown label": (spec(), "d.jsonl", ROWS + '{"text": "meh", "label": "maybe"}\n', [],
                            "d.jsonl:3: field 'label': label 'maybe'"),
    "jsonl number label 1.0 vs 1": (spec(words='[label_words]\n0 = "negative"\n1 = "positive"\n'), "d.jsonl",
                                    '{"text": "a", "label": 1}\n{"text": "b", "label": 1.0}\n', [],
                                    "d.jsonl:2: field 'label': label '1.0'"),
    "jsonl boolean label, labels yes/no": (spec(words='[label_words]\nyes = "yes"\nno = "no"\n'), "d.jsonl",
                                           '{"text": "a", "label": true}\n', [], "label 'true'"),
    "jsonl missing input": (spec(), "d.jsonl", ROWS + '{"label": "pos"}\n', [], "d.jsonl:3: field 'text'"),
    "jsonl missing label": (spec(), "d.jsonl", ROWS + '{"text": "x"}\n', [], "d.jsonl:3: field 'label'"),
    "jsonl null label": (spec(), "d.jsonl", ROWS + '{"text": "x", "label": null}\n', [], "d.jsonl:3: field 'label'"),
    "jsonl empty file": (spec(), "d.jsonl", "", [], "hold no example"),
    "jsonl blank lines only": (spec(), "d.jsonl", "\n\n\n", [], "hold no example"),
    "jsonl duplicate ids": (spec(), "d.jsonl", '{"id": 1, "text": "a", "label": "pos"}\n'
                            '{"id": 1, "text": "b", "label": "neg"}\n', [], "d.jsonl:2: field 'id': duplicate id"),
    "min_words drops everything": (spec(fmt="min_words = 50\n"), "d.jsonl", ROWS, [], "none has min_words=50"),
    "json not a list": (spec(data_name="d.json"), "d.json", '{"text": "a"}', [], "must hold a list of objects"),
    "json bad": (spec(data_name="d.json"), "d.json", "[{", [], "d.json:1: not valid JSON"),
    "csv extra column": (spec(data_name="d.csv"), "d.csv", "text,label\ngood,pos\nbad,neg,extra\n", [],
                         "d.csv:3: 3 columns"),
    "csv missing column": (spec(data_name="d.csv"), "d.csv", "text,label\ngood,pos\nbad\n", [], "d.csv:3: 1 columns"),
    "csv header lacks label": (spec(data_name="d.csv"), "d.csv", "text,lab\ngood,pos\n", [], "d.csv:2: field 'label'"),
    "headerless tsv without columns": (spec(data_name="d.tsv"), "d.tsv", "good film\tpos\nbad film\tneg\n", [],
                                       "d.tsv:2: field 'text'"),
    "tsv unknown label": (spec(data_name="d.tsv"), "d.tsv", "text\tlabel\ngood\tpos\nbad\tbad\n", [],
                          "d.tsv:3: field 'label'"),
    "max-eval negative": (spec(), "d.jsonl", ROWS, ["--max-eval", "-3"], "--max-eval must be a whole number >= 0"),
    "max-train negative": (spec(), "d.jsonl", ROWS, ["--max-train", "-1"], "--max-train must be"),
    "shots negative": (spec(), "d.jsonl", ROWS, ["--shots", "-2"], "--shots must be"),
    "eval batch size zero": (spec(), "d.jsonl", ROWS, ["--eval-batch-size", "0"], "--eval-batch-size must be >= 1"),
    "unknown method": (spec(), "d.jsonl", ROWS, ["--method", "nosuch"], "no method 'nosuch'"),
    "unknown method option": (spec(), "d.jsonl", ROWS, ["-o", "colour=red"], "has no option 'colour'"),
    "unknown eval split": (spec(), "d.jsonl", ROWS, ["--eval-split", "valid"], "eval split 'valid'"),
    "bad holdout": (spec(), "d.jsonl", ROWS, ["--select-split", "holdout:x"], "holdout:N"),
    "bad dtype": (spec(), "d.jsonl", ROWS, ["--dtype", "int3", "--model", "/nonexistent/model"], "int3"),
    "nonexistent local model": (spec(), "d.jsonl", ROWS, ["--model", "/nonexistent/model"], "no such local directory"),
    "output path is a file": (spec(), "d.jsonl", ROWS, ["--output", "{tmp}/afile"], "is a file, not a directory"),
    "select on the reported split": (spec(), "d.jsonl", ROWS, ["--select-split", "dev", "--eval-split", "dev"],
                                     "is the reported split"),
    "budget not positive": (spec(), "d.jsonl", ROWS, ["--budget-flops", "0"], "--budget-flops must be > 0"),
}


def case_command(name: str, directory: Path) -> list[str]:
    """Write case ``name``'s spec and data into ``directory``; returns its ``promptopt`` arguments (output: ``run``)."""
    text, data_name, data, args, _ = CASES[name]
    spec_path = directory / "task.toml"
    (spec_path.write_bytes if isinstance(text, bytes) else spec_path.write_text)(text)
    if data_name is not None:
        target = directory / data_name
        (target.write_bytes if isinstance(data, bytes) else target.write_text)(data)
    (directory / "afile").write_text("")
    args = [a.replace("{tmp}", str(directory)) for a in args]
    if "--output" not in args:
        args += ["--output", str(directory / "run")]
    return ["run", "--task", str(spec_path), "--no-progress", *args]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_one_line_exit_2_and_no_result(name, tmp_path):
    expected, args, out = CASES[name][4], CASES[name][3], tmp_path / "run"
    result = CliRunner().invoke(cli, case_command(name, tmp_path))
    message = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, message, result.exc_info)
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert expected in message, message
    if "--model" not in args and name.startswith(("spec", "data", "jsonl", "json", "csv", "tsv", "headerless", "min")):
        assert str(tmp_path) in message, message  # names the file
    assert not (out / "result.json").exists()


def test_jsonl_with_u2028_bom_and_crlf_loads(tmp_path):
    from promptopt.plugins import get_task

    (tmp_path / "d.jsonl").write_bytes(("\ufeff" + json.dumps({"text": "a\u2028b", "label": "pos"}, ensure_ascii=False)
                                        + "\r\n" + '{"text": "c", "label": "neg"}\r\n').encode("utf-8"))
    (tmp_path / "task.toml").write_text(spec())
    rows = get_task(str(tmp_path / "task.toml")).load_split("dev")
    assert [r.inputs["text"] for r in rows] == ["a\u2028b", "c"]


def test_csv_quoted_newline_is_one_field(tmp_path):
    from promptopt.plugins import get_task

    (tmp_path / "d.csv").write_text('text,label\r\n"line one\nline two",pos\r\nplain,neg\r\n')
    (tmp_path / "task.toml").write_text(spec(data_name="d.csv"))
    rows = get_task(str(tmp_path / "task.toml")).load_split("dev")
    assert [r.inputs["text"] for r in rows] == ["line one\nline two", "plain"]
    assert rows[1].source == "d.csv:4"


def test_registered_task_wins_over_a_same_named_directory(tmp_path, monkeypatch):
    from promptopt.plugins import get_task

    (tmp_path / "tiny-reviews").mkdir()
    monkeypatch.chdir(tmp_path)
    assert get_task("tiny-reviews").name == "tiny-reviews"


# -- inputs that need a model: saved prompts for another model, resumes with other settings, broken plugins ---------


def _prompt_dir(tmp_path, width=None, ids=None):
    import torch

    from promptopt.data.prompt import Prompt

    template = "[P*2:p0]{text} It was{answer}" if width else "[T*2:t0]{text} It was{answer}"
    prompt = Prompt.from_template(template)
    if width:
        prompt = prompt.with_vectors({"p0": torch.zeros(2, width)})
    if ids:
        prompt = prompt.with_tokens("t0", ids)
    prompt.meta["model"] = "some-other-model"
    prompt.save(tmp_path / "prompt")
    return tmp_path / "prompt"


def _corrupt(tmp_path):
    directory = _prompt_dir(tmp_path, width=8)
    path = directory / "vectors.safetensors"
    path.write_bytes(path.read_bytes()[:20])
    return directory


def _made_for_other(tmp_path, what):
    import json as _json

    directory = _prompt_dir(tmp_path, width=32) if what == "weights" else _prompt_dir(tmp_path, ids=[5, 6])
    meta_file = directory / "prompt.json"
    meta = _json.loads(meta_file.read_text())
    identity = {"weights": "sha256:" + "0" * 64} if what == "weights" else {"tokenizer": {"sha256": "f" * 64}}
    meta.setdefault("meta", {})["model_identity"] = identity
    meta_file.write_text(_json.dumps(meta))
    return directory


MODEL_CASES = {
    "soft vectors trained on other weights": (lambda tmp: _made_for_other(tmp, "weights"), "trained on other weights"),
    "token ids of another tokenizer": (lambda tmp: _made_for_other(tmp, "tokenizer"), "made for another tokenizer"),
    "prompt of another hidden size": (lambda tmp: _prompt_dir(tmp, width=7), "has width 7 but model"),
    "prompt with ids past the vocabulary": (lambda tmp: _prompt_dir(tmp, ids=[10**7, 1]), "outside the vocabulary"),
    "truncated vectors file": (_corrupt, "vectors.safetensors"),
}


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_a_saved_prompt_that_does_not_fit_the_model_gives_one_line(name, tmp_path, tiny_model_dirs):
    make, expected = MODEL_CASES[name]
    prompt_dir = make(tmp_path)
    task = str(Path(__file__).resolve().parent.parent / "datasets" / "tiny_reviews" / "task.toml")
    result = CliRunner().invoke(cli, ["eval", "--prompt", str(prompt_dir), "--task", task, "--split", "dev",
                                      "--model", str(tiny_model_dirs["causal"]), "--max-eval", "4"])  # fmt: skip
    message = result.output.strip().splitlines()[-1] if result.output.strip() else ""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exc_info)
    assert "Traceback" not in result.output and expected in message, result.output


def test_resume_with_other_settings_gives_one_line_naming_the_field(tmp_path, tiny_model_dirs):
    task = str(Path(__file__).resolve().parent.parent / "datasets" / "tiny_reviews" / "task.toml")
    base = ["run", "--task", task, "--model", str(tiny_model_dirs["causal"]), "--max-eval", "4", "--no-progress",
            "--output", str(tmp_path / "run")]  # fmt: skip
    assert CliRunner().invoke(cli, base).exit_code == 0
    result = CliRunner().invoke(cli, [*base, "--resume", "-t", "{text} Honestly:{answer}"])
    lines = [line for line in result.output.strip().splitlines() if "Loading weights" not in line]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "cannot resume: field templates was [" in lines[0]


def test_a_plugin_that_fails_to_import_is_named_in_one_line(monkeypatch):
    from importlib import metadata

    from promptopt import plugins

    class Broken:
        name, value, group = "brokenplugin", "brokenplugin_mod", "promptopt"

        def load(self):
            raise ImportError("No module named 'brokenplugin_mod'")

    real = metadata.entry_points
    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda group=None: [*real(group=group), Broken()])  # fmt: skip
    plugins.reset_plugin_manager()
    try:
        result = CliRunner().invoke(cli, ["methods"])
    finally:
        plugins.reset_plugin_manager()
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: plugin 'brokenplugin' (brokenplugin_mod) failed to load")
