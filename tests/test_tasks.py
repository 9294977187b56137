import json
import textwrap

import pytest

from promptopt.errors import DataError, PromptoptError
from promptopt.plugins import get_task, tasks
from promptopt.data.tasks import TaskKind, parse_task_spec

from conftest import needs_shared

GOOD = """\
name = "toy"
inputs = ["text"]
templates = ["{text} It was{answer}"]

[label_words]
neg = ["bad"]
pos = ["good", "great"]

[splits.train]
path = "{spec_dir}/train.jsonl"
"""


def write(tmp_path, spec=GOOD, rows=None, name="task.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(spec))
    if rows is not None:
        (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    return path


def test_a_good_spec_loads_and_reads_its_rows(tmp_path):
    path = write(tmp_path, rows=['{"text": " fine ", "label": "pos"}', '{"text": "meh", "label": "neg"}'])
    spec = parse_task_spec(path)
    assert spec.kind == TaskKind.CLASSIFICATION and spec.labels == ["neg", "pos"]
    rows = spec.load_split("train")
    assert [(r.inputs["text"], r.label) for r in rows] == [("fine", "pos"), ("meh", "neg")]
    assert rows[0].source == "train.jsonl:1"


def test_min_words_keeps_rows_with_enough_words_and_is_checked(tmp_path):
    rows = ['{"text": "one", "label": "pos"}', '{"text": "two words", "label": "neg"}', '{"text": "a b c", "label": "pos"}']
    path = write(tmp_path, spec=GOOD + "min_words = 2\n", rows=rows)
    assert [r.inputs["text"] for r in parse_task_spec(path).load_split("train")] == ["two words", "a b c"]
    path = write(tmp_path, spec=GOOD + "min_words = -1\n", rows=rows)
    with pytest.raises(DataError, match="min_words must be a whole number") as e:
        parse_task_spec(path)
    assert "splits.train.min_words" in str(e.value)


def test_unknown_label_in_a_row_names_file_line_and_field(tmp_path):
    path = write(tmp_path, rows=['{"text": "a", "label": "pos"}', '{"text": "b", "label": "maybe"}'])
    with pytest.raises(DataError) as e:
        parse_task_spec(path).load_split("train")
    assert (e.value.path.endswith("train.jsonl"), e.value.line, e.value.field) == (True, 2, "label")
    assert "'maybe' is not one of ['neg', 'pos']" in str(e.value)


def test_missing_input_field_names_file_line_and_field(tmp_path):
    path = write(tmp_path, rows=['{"text": "a", "label": "pos"}', "", '{"txt": "b", "label": "pos"}'])
    with pytest.raises(DataError, match=r"train.jsonl:3: field 'text': missing input field"):
        parse_task_spec(path).load_split("train")


def test_broken_json_row_names_the_line(tmp_path):
    path = write(tmp_path, rows=['{"text": "a", "label": "pos"}', '{"text": "b", "label": '])
    with pytest.raises(DataError, match=r"train.jsonl:2: not valid JSON"):
        parse_task_spec(path).load_split("train")


def test_csv_without_header_uses_declared_columns_and_checks_width(tmp_path):
    spec = GOOD.replace('path = "{spec_dir}/train.jsonl"', 'path = "{spec_dir}/train.csv"\ncolumns = ["label", "text"]')
    path = write(tmp_path, spec)
    (tmp_path / "train.csv").write_text('pos,"good, really"\nneg,bad,extra\n')
    with pytest.raises(DataError, match=r"train.csv:2: 3 columns where the header has 2"):
        parse_task_spec(path).load_split("train")
    (tmp_path / "train.csv").write_text('pos,"good, really"\n')
    assert parse_task_spec(path).load_split("train")[0].inputs == {"text": "good, really"}


@pytest.mark.parametrize(
    "edit, field, line",
    [
        (lambda s: s.replace('inputs = ["text"]', 'inputs = "text"'), "inputs", 2),
        (lambda s: s.replace("{text} It was{answer}", "{text} It was"), "templates", 3),
        (lambda s: s.replace("{text} It was{answer}", "{txt} {answer}"), "templates", 3),
        (lambda s: s.replace('pos = ["good", "great"]', "pos = []"), "label_words.pos", 7),
        (lambda s: 'colour = "red"\n' + s, "colour", 1),
        (lambda s: s + 'colour = "red"\n', "splits.train", None),
        (lambda s: s.replace('name = "toy"', 'name = "toy"\nkind = "regression"'), "kind", 2),
        (lambda s: s.replace("[splits.train]", "[splits.valid]"), "splits.valid", None),
    ],
)
def test_bad_spec_fields_are_named_with_their_line(tmp_path, edit, field, line):
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(DataError) as e:
        parse_task_spec(path)
    assert e.value.field == field and e.value.path == str(path)
    if line is not None:
        assert e.value.line == line


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace('name = "toy"', 'name = "toy'))
    with pytest.raises(DataError) as e:
        parse_task_spec(path)
    assert e.value.line == 1 and "not valid TOML" in str(e.value)


def test_missing_data_file_says_how_to_point_at_the_data(tmp_path, monkeypatch):
    spec = GOOD.replace("{spec_dir}/train.jsonl", "{data_root}/nowhere/train.jsonl")
    monkeypatch.setenv("PROMPTOPT_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="PROMPTOPT_DATA"):
        parse_task_spec(write(tmp_path, spec)).load_split("train")


def test_json_spec_is_accepted(tmp_path):
    obj = {"name": "j", "inputs": ["text"], "templates": ["{text}{answer}"], "label_words": {"a": "x", "b": "y"},
           "splits": {"train": {"path": "{spec_dir}/train.jsonl"}}}  # fmt: skip
    path = tmp_path / "t.json"
    path.write_text(json.dumps(obj))
    assert parse_task_spec(path).label_words == {"a": ["x"], "b": ["y"]}


def test_split_from_makes_a_seeded_disjoint_split(tmp_path):
    rows = [json.dumps({"s": f"s{i}", "o": f"o{i}"}) for i in range(50)]
    (tmp_path / "facts.jsonl").write_text("\n".join(rows))
    path = tmp_path / "f.toml"
    path.write_text(textwrap.dedent("""\
        name = "facts"
        kind = "fact_retrieval"
        inputs = ["s"]
        label = "o"
        templates = ["{s} is in{answer}"]
        [split_from]
        path = "{spec_dir}/facts.jsonl"
        seed = 3
        fractions = { train = 0.4, dev = 0.2, test = 0.4 }
        """))
    spec = parse_task_spec(path)
    parts = {s: [e.inputs["s"] for e in spec.load_split(s)] for s in ("train", "dev", "test")}
    assert [len(v) for v in parts.values()] == [20, 10, 20]
    assert len(set().union(*parts.values())) == 50
    assert parts == {s: [e.inputs["s"] for e in parse_task_spec(path).load_split(s)] for s in parts}


def test_builtin_tasks_are_registered_through_the_tasks_plugin():
    found = tasks()
    for name in ("tiny-reviews", "sst2", "rte", "sst5", "mr", "cr", "subj", "lama-P19"):
        assert name in found
    assert len([n for n in found if n.startswith("lama-")]) == 41


def test_unknown_task_name_lists_what_exists():
    with pytest.raises(PromptoptError, match="registered:.*tiny-reviews"):
        get_task("no-such-task")


def test_bundled_tiny_reviews_loads_without_shared_data(reviews_task):
    sizes = {s: len(reviews_task.load_split(s)) for s in ("train", "dev", "test")}
    assert sizes == {"train": 200, "dev": 60, "test": 60}


@pytest.mark.parametrize("name, split, n", [("sst2", "dev", 872), ("sst2", "test", 1821), ("rte", "dev", 277),
                                            ("sst2-long", "train", 25152), ("sst2-long", "dev", 872),
                                            ("sst5", "test", 2210), ("subj", "train", 32), ("cr", "test", 2000)])
def test_shared_data_sets_load_with_their_specs(name, split, n):
    needs_shared(name.split("-")[0])
    assert len(get_task(name).load_split(split)) == n


def test_lama_spec_reads_the_shared_triples():
    needs_shared("lama_trex")
    spec = get_task("lama-P19")
    dev = spec.load_split("dev")
    assert len(dev) == round(0.2 * 779) and dev[0].inputs["sub_label"]


def _spec_for(tmp_path, name: str, extra: str = "") -> "Path":
    spec = GOOD.replace('path = "{spec_dir}/train.jsonl"', f'path = "{{spec_dir}}/{name}"\n{extra}')
    return write(tmp_path, spec)


def test_tsv_quoting_delimiter_and_header_are_spec_keys(tmp_path):
    # pandas/spreadsheet TSV: quoted fields holding tabs and quotes
    (tmp_path / "train.tsv").write_text('text\tlabel\n"good\tvery ""good"""\tpos\nbad\tneg\n')
    rows = parse_task_spec(_spec_for(tmp_path, "train.tsv", 'quoting = "minimal"')).load_split("train")
    assert [r.inputs["text"] for r in rows] == ['good\tvery "good"', "bad"]
    with pytest.raises(DataError, match="train.tsv:2: 3 columns"):  # GLUE-style (unquoted) reading splits the tab
        parse_task_spec(_spec_for(tmp_path, "train.tsv")).load_split("train")
    (tmp_path / "train.csv").write_text("IGNORED;HEADER\ngood;pos\n")
    spec = _spec_for(tmp_path, "train.csv", 'delimiter = ";"\nheader = true\ncolumns = ["text", "label"]')
    assert [(r.inputs["text"], r.label) for r in parse_task_spec(spec).load_split("train")] == [("good", "pos")]
    with pytest.raises(DataError, match="header = false needs 'columns'"):
        parse_task_spec(_spec_for(tmp_path, "train.csv", "header = false"))
    with pytest.raises(DataError, match="quoting 'all' is not one of"):
        parse_task_spec(_spec_for(tmp_path, "train.csv", 'quoting = "all"'))


def test_parquet_files_and_saved_hf_datasets_load_by_path(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"text": ["good film", "bad film"], "label": ["pos", "neg"]})
    pq.write_table(table, tmp_path / "train.parquet")
    rows = parse_task_spec(_spec_for(tmp_path, "train.parquet")).load_split("train")
    assert [(r.inputs["text"], r.label, r.source) for r in rows] == [("good film", "pos", "train.parquet:1"),
                                                                      ("bad film", "neg", "train.parquet:2")]
    # the layout datasets' save_to_disk writes: Arrow stream files named in state.json
    saved = tmp_path / "saved"
    saved.mkdir()
    with pa.OSFile(str(saved / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (saved / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (saved / "dataset_info.json").write_text("{}")
    rows = parse_task_spec(_spec_for(tmp_path, "saved")).load_split("train")
    assert [r.label for r in rows] == ["pos", "neg"]
    (saved / "state.json").unlink()
    with pytest.raises(DataError, match="no state.json"):
        parse_task_spec(_spec_for(tmp_path, "saved")).load_split("train")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot read parquet data"):
        parse_task_spec(_spec_for(tmp_path, "bad.parquet")).load_split("train")


def test_promptopt_tasks_path_checks_a_spec_and_its_data_without_a_model(tmp_path):
    from click.testing import CliRunner

    from promptopt.cli import cli

    spec = GOOD.replace('[splits.train]\npath = "{spec_dir}/train.jsonl"\n',
                        '[splits.train]\npath = "{spec_dir}/train.jsonl"\n[splits.dev]\npath = "{spec_dir}/dev.jsonl"\n')
    path = write(tmp_path, spec, rows=['{"text": "fine", "label": "pos"}', '{"text": "awful", "label": "neg"}'])
    (tmp_path / "dev.jsonl").write_text('{"text": "fine", "label": "pos"}\n')
    result = CliRunner().invoke(cli, ["tasks", str(path)])
    assert result.exit_code == 2, result.output  # dev has no 'neg' example
    assert "train        2 examples  neg: 1, pos: 1" in result.output
    assert "problem: split dev: no example of label(s) ['neg']" in result.output
    assert "warning: splits train and dev share 1 example(s)" in result.output
    (tmp_path / "dev.jsonl").write_text('{"text": "fine", "label": "pos"}\n{"text": "x", "label": "meh"}\n')
    result = CliRunner().invoke(cli, ["tasks", str(path)])
    assert result.exit_code == 2 and "dev.jsonl:2: field 'label'" in result.output
    (tmp_path / "dev.jsonl").write_text('{"text": "nice", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
    result = CliRunner().invoke(cli, ["tasks", str(path)])
    assert result.exit_code == 0 and "problem" not in result.output and "warning" not in result.output
