"""Property-based tests (hypothesis, derandomized: the same cases every run): the template parser and the data
loaders either succeed or raise promptopt's own error, never another exception."""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="property tests need the 'hypothesis' package (in the dev extra)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from promptopt.data.prompt import Prompt, parse_template  # noqa: E402
from promptopt.data.tasks import parse_task_spec  # noqa: E402
from promptopt.errors import PromptoptError  # noqa: E402

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
TEMPLATE_CHARS = st.sampled_from(list("{}[]*:P0123456789 abtextanswer\n\\,=-_\"'é\u2028"))
TEMPLATES = st.one_of(
    st.text(TEMPLATE_CHARS, max_size=40),
    st.lists(st.sampled_from(["{text}", "{answer}", "[P*3]", "[P*2:a]", "[T*2]", "[P]", "{", "}", "[P*0]", "[P*x]",
                              "Review:", " ", "\n", "[T*1:t]", "{ans", "[P*3:a][P*2:a]"]), max_size=8).map("".join),
)  # fmt: skip


@SETTINGS
@given(TEMPLATES)
def test_the_template_parser_parses_or_raises_its_own_error(template):
    try:
        segments = parse_template(template)
        prompt = Prompt.from_template(template)
        prompt.check_fields(["text"])
    except PromptoptError:
        return
    assert segments is not None and prompt.template == template


CELL = st.one_of(st.text(max_size=12), st.integers(-3, 3), st.booleans(), st.none(), st.floats(allow_nan=True),
                 st.sampled_from(["pos", "neg", "1", "1.0", "", " pos "]))  # fmt: skip
ROW = st.dictionaries(st.sampled_from(["text", "label", "id", "extra"]), CELL, max_size=4)
SPEC = """\
name = "prop"
inputs = ["text"]
templates = ["{{text}} It was{{answer}}"]

[label_words]
neg = ["bad"]
pos = ["good"]

[splits.train]
path = "{{spec_dir}}/train.{ext}"
{extra}
"""


def _csv_cell(value, sep: str) -> str:
    text = "" if value is None else str(value)
    return text if not any(c in text for c in (sep, '"', "\n", "\r")) else '"' + text.replace('"', '""') + '"'


@SETTINGS
@given(st.lists(ROW, max_size=5), st.sampled_from(["jsonl", "json", "csv", "tsv"]), st.booleans(),
       st.sampled_from(["", 'quoting = "minimal"', 'columns = ["text", "label"]', "min_words = 1"]))  # fmt: skip
def test_data_loaders_load_or_raise_their_own_error(tmp_path_factory, rows, ext, garble, extra):
    directory = tmp_path_factory.mktemp("prop")
    if ext == "jsonl":
        text = "\n".join(json.dumps(r) for r in rows)
    elif ext == "json":
        text = json.dumps(rows)
    else:
        sep = "," if ext == "csv" else "\t"
        text = "text" + sep + "label\n" + "\n".join(sep.join(_csv_cell(r.get(k), sep) for k in ("text", "label"))
                                                    for r in rows)  # fmt: skip
    if garble:  # a cut-off, BOM-prefixed or otherwise damaged file
        text = "\ufeff" + text[: len(text) * 2 // 3] + '"{\x00'
    (directory / f"train.{ext}").write_text(text, encoding="utf-8")
    (directory / "task.toml").write_text(SPEC.format(ext=ext, extra=extra))
    try:
        examples = parse_task_spec(directory / "task.toml").load_split("train")
    except PromptoptError:
        return
    assert examples and all(ex.label in ("neg", "pos") for ex in examples)
