import pytest
import torch

from promptopt.errors import PromptoptError, TemplateError
from promptopt.data.prompt import Prompt, SegmentKind, decode_escapes, parse_template


def kinds(template):
    return [(s.kind.value, s.text or s.field or s.name) for s in parse_template(template)]


def test_parse_manual_template_into_text_field_and_answer():
    assert kinds("Review: {sentence}\nSentiment:{answer}") == [
        ("text", "Review: "), ("field", "sentence"), ("text", "\nSentiment:"), ("answer", ""),
    ]  # fmt: skip


def test_parse_soft_and_trigger_segments_with_counts_and_names():
    segs = parse_template("[P*20] {premise} [P*4:mid] {hypothesis} [T*3]{answer}")
    soft = [s for s in segs if s.kind == SegmentKind.VECTORS]
    assert [(s.name, s.n) for s in soft] == [("p0", 20), ("mid", 4)]
    (tokens,) = [s for s in segs if s.kind == SegmentKind.TOKENS]
    assert (tokens.name, tokens.n, tokens.ids) == ("t0", 3, None)


def test_literal_braces_and_unrelated_brackets_stay_text():
    segs = parse_template("{{x}} [X] was born in {answer} [Y]")
    assert segs[0].text == "{x} [X] was born in "
    assert segs[-1].text == " [Y]"


@pytest.mark.parametrize(
    "template, message",
    [
        ("Review: {sentence}", "exactly one {answer}"),
        ("{answer} and {answer}", "exactly one {answer}"),
        ("Review: {sentence\n{answer}", "is not a field name"),
        ("Review: {sentence} }{answer}", "'}' without a matching '{'"),
        ("Review {answer", "never closed"),
        ("Review {{answer}", "without a matching"),
        ("[P*0]{answer}", "at least 1"),
        ("[P:a][P:a]{answer}", "used twice"),
        ("{}{answer}", "is not a field name"),
        ("", "non-empty"),
    ],
)
def test_bad_templates_raise_with_a_clear_message(template, message):
    with pytest.raises(TemplateError) as e:
        parse_template(template)
    assert message in str(e.value)


def test_bad_template_error_names_the_position():
    with pytest.raises(TemplateError) as e:
        parse_template("abc }{answer}")
    assert e.value.position == 4


def test_text_round_trips_through_the_parser():
    template = "[P*2:x] {{lit}} {a}\n[T*2]{answer} ."
    prompt = Prompt.from_template(template)
    assert parse_template(prompt.text()) == prompt.segments


def test_decode_escapes_turns_backslash_n_into_newline():
    assert decode_escapes("a\\nb\\tc") == "a\nb\tc"


def test_check_fields_names_the_unknown_field():
    with pytest.raises(TemplateError, match="not an input of this task"):
        Prompt.from_template("{text} {other}{answer}").check_fields(["text"])


def test_with_tokens_sets_ids_and_checks_the_count():
    prompt = Prompt.from_template("{x} [T*2]{answer}")
    assert prompt.with_tokens("t0", [5, 6]).segments_of(SegmentKind.TOKENS)[0].ids == (5, 6)
    with pytest.raises(PromptoptError):
        prompt.with_tokens("t0", [5])
    with pytest.raises(PromptoptError):
        prompt.with_tokens("nope", [5, 6])


def test_save_and_load_round_trip_with_soft_values_and_no_pickle(tmp_path):
    prompt = Prompt.from_template("[P*3] {x} [T*1]{answer}", label_words={"a": ["yes"]})
    prompt = prompt.with_tokens("t0", [7]).with_vectors({"p0": torch.arange(12.0).reshape(3, 4)})
    prompt.meta["method"] = "test"
    prompt.save(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["prompt.json", "vectors.safetensors"]
    loaded = Prompt.load(tmp_path / "p")
    assert loaded.segments == prompt.segments
    assert torch.equal(loaded.vectors["p0"], prompt.vectors["p0"])
    assert loaded.label_words == {"a": ["yes"]} and loaded.meta["method"] == "test"


def test_load_rejects_a_directory_without_prompt_json(tmp_path):
    with pytest.raises(PromptoptError, match="not a prompt directory"):
        Prompt.load(tmp_path)


def test_load_names_the_file_and_line_of_bad_json(tmp_path):
    (tmp_path / "prompt.json").write_text('{\n  "format_version": 1,\n  oops\n}')
    with pytest.raises(PromptoptError, match=r"prompt.json:3"):
        Prompt.load(tmp_path)


def test_atomic_writes_leave_ordinary_file_permissions(tmp_path):
    import os

    from promptopt.data.files import write_json

    write_json(tmp_path / "x.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask
