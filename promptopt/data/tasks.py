"""Task specs and data loading.

A task spec is a TOML (or JSON) file; the README documents every key. Paths in a spec may use ``{data_root}``
(the shared data folder: ``PROMPTOPT_DATA``, else ``../shared/datasets`` found beside the working directory or the
checkout) and ``{spec_dir}`` (the folder holding the spec). Every error names the file, the line and the field.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import os
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import DataError, PromptoptError, TemplateError
from promptopt.data.prompt import parse_template

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class TaskKind(str, enum.Enum):
    CLASSIFICATION = "classification"
    FACT_RETRIEVAL = "fact_retrieval"
    MULTIPLE_CHOICE = "multiple_choice"


class Metric(str, enum.Enum):
    ACCURACY = "accuracy"
    MACRO_F1 = "macro_f1"
    P_AT_1 = "p_at_1"


SPLITS = ("train", "dev", "test")
FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "hf_disk")
#: how csv/tsv fields are quoted (spec key ``quoting``): tsv defaults to none (GLUE's files), csv to minimal
QUOTING = {"none": csv.QUOTE_NONE, "minimal": csv.QUOTE_MINIMAL}


@dataclass(frozen=True)
class Example:
    """One labelled example: its input fields, its label (a string) and where it came from (``file:line``).
    A multiple-choice example also holds its choices; its label is the index of the right one (``"0"``, ``"1"``...)."""

    inputs: dict[str, str]
    label: str
    source: str = ""
    choices: tuple[str, ...] = ()


@dataclass
class SplitSource:
    path: str | None = None
    format: str | None = None
    columns: list[str] | None = None
    rename: dict[str, str] = field(default_factory=dict)
    hub: str | None = None
    hub_config: str | None = None
    hub_split: str | None = None
    min_words: int = 0
    #: csv/tsv: field separator (default "," or tab), quoting ("none" or "minimal": fields in double quotes, as
    #: pandas and spreadsheets write them), and whether the first row is a header (default: yes unless ``columns``)
    delimiter: str | None = None
    quoting: str | None = None
    header: bool | None = None


@dataclass
class KShot:
    """A spec's ``kshot`` table: ``sources`` (``train`` and ``dev``, paths with ``{k}`` and ``{seed}``) and
    ``test``, the name of the spec's own split that k-shot runs report (its full test set)."""

    sources: dict[str, SplitSource]
    test: str = "test"


@dataclass
class TaskSpec:
    """A parsed task spec. Use :func:`load_task` to read one from a file or by registered name."""

    name: str
    kind: TaskKind
    inputs: list[str]
    label: str
    label_words: dict[str, list[str]]
    templates: list[str]
    metric: Metric
    splits: dict[str, SplitSource]
    path: Path | None = None
    description: str = ""
    split_from: dict[str, Any] | None = None
    label_names: dict[str, str] = field(default_factory=dict)
    #: how class scores are computed: loglik, norm_token, norm_char or calibrated (promptopt.engine.scoring)
    scoring: str = "loglik"
    #: multiple choice: the field holding each example's list of choices
    choices: str = "choices"
    #: splits :meth:`load_split` refuses: a run withholds its reported split from the method
    withheld: tuple[str, ...] = ()
    #: the spec's ``kshot`` table: few-shot train/dev sources whose paths hold ``{k}`` and ``{seed}`` (LM-BFF's
    #: splits), and ``test``, the spec's split reported with them; None when the task has no k-shot splits
    kshot: KShot | None = None
    #: the k-shot split this spec reads (``"16-13"``), set by :meth:`with_kshot`
    kshot_split: str | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.label_words)

    def with_kshot(self, k: int, seed: int, data_root: str | Path | None = None) -> "TaskSpec":
        """This task on one k-shot split (LM-BFF's few-shot protocol): train and dev from the ``kshot`` sources
        with ``{k}`` and ``{seed}`` filled in, test the spec's ``kshot.test`` split (its full test set). A task
        without ``kshot``, or a split whose file is missing, is a :class:`DataError` naming the file and field."""
        if self.kshot is None:
            raise DataError(self.path or self.name, f"task {self.name!r} has no k-shot splits (no 'kshot' table in its "
                            "spec), so it cannot run --kshot", field="kshot")  # fmt: skip
        splits = {}
        for split in ("train", "dev"):
            source = self.kshot.sources[split]
            filled = dataclasses.replace(source, path=source.path.replace("{k}", str(k)).replace("{seed}", str(seed)))
            path = _expand(filled.path, self.path, data_root)
            if not path.exists():
                raise DataError(self.path or self.name, f"k-shot split {k}-{seed} of task {self.name!r} is missing: "
                                f"{path} does not exist", field=f"kshot.{split}.path")  # fmt: skip
            splits[split] = filled
        splits["test"] = self.splits[self.kshot.test]
        return dataclasses.replace(self, splits=splits, split_from=None, kshot_split=f"{k}-{seed}")

    @property
    def available_splits(self) -> list[str]:
        if self.split_from:
            return [s for s in SPLITS if s in self.split_from.get("fractions", {})]
        return [s for s in SPLITS if s in self.splits]

    def load_split(self, split: str, data_root: str | Path | None = None) -> list[Example]:
        """Read one split (``train``, ``dev`` or ``test``) into examples, checking every row."""
        if split in self.withheld:
            raise PromptoptError(f"task {self.name!r}: split {split!r} is this run's reported split; a method never "
                                 "reads it (optimise on run.train, choose on run.select)")  # fmt: skip
        if self.split_from:
            return self._split_from(split, data_root)
        if split not in self.splits:
            raise PromptoptError(f"task {self.name!r} has no {split!r} split; it has {self.available_splits}")
        return self._read_source(self.splits[split], f"splits.{split}", data_root)

    def _split_from(self, split: str, data_root) -> list[Example]:
        conf = self.split_from
        fractions = conf.get("fractions", {})
        if split not in fractions:
            raise PromptoptError(f"task {self.name!r} has no {split!r} split; it has {self.available_splits}")
        rows = self._read_source(_source_from_dict(conf, self.path, "split_from"), "split_from", data_root)
        order = list(range(len(rows)))
        random.Random(int(conf.get("seed", 0))).shuffle(order)
        start = 0
        for name in SPLITS:
            if name not in fractions:
                continue
            count = round(float(fractions[name]) * len(rows))
            if name == split:
                return [rows[i] for i in sorted(order[start : start + count])]
            start += count
        raise AssertionError("unreachable")

    def _read_source(self, source: SplitSource, where: str, data_root) -> list[Example]:
        path = _expand(source.path, self.path, data_root) if source.path else None
        if path is not None and path.exists():
            rows = _read_rows(path, source)
        elif source.hub:
            rows = _read_hub(source)
            path = Path(f"hub:{source.hub}")
        else:
            hint = ""
            if source.path and "{data_root}" in source.path:
                hint = " Set PROMPTOPT_DATA to the folder that holds the shared data sets."
            if source.hub is None:
                hint += " (The spec names no 'hub' data set to fall back on.)"
            raise DataError(self.path or self.name, f"data file {path} does not exist.{hint}", field=f"{where}.path")
        examples = [self._example(row, path, line, source) for line, row in rows]
        seen: dict[str, int] = {}
        for line, row in rows:
            if "id" in row and row["id"] is not None:
                key = str(row["id"])
                if key in seen:
                    raise DataError(path, f"duplicate id {key!r} (first on line {seen[key]})", line=line, field="id")
                seen[key] = line
        if source.min_words:
            examples = [ex for ex in examples if sum(len(v.split()) for v in ex.inputs.values()) >= source.min_words]
        if not examples:
            why = f" (none has min_words={source.min_words})" if rows and source.min_words else ""
            raise DataError(path, f"the {where} data hold no example{why}", field=where)
        return examples

    def _example(self, row: dict, path: Path, line: int, source: SplitSource) -> Example:
        for old, new in source.rename.items():
            if old in row:
                row[new] = row.pop(old)
        inputs = {}
        for name in self.inputs:
            value = row.get(name)
            if value is None:
                raise DataError(path, f"missing input field; the row has {sorted(row)}", line=line, field=name)
            if not isinstance(value, str):
                value = str(value)
            inputs[name] = value.strip()
        if self.label not in row or row[self.label] is None:
            raise DataError(path, f"missing label field; the row has {sorted(row)}", line=line, field=self.label)
        label = row[self.label]
        label = str(label).strip() if not isinstance(label, bool) else str(label).lower()
        if self.kind == TaskKind.CLASSIFICATION and label not in self.label_words:
            raise DataError(
                path, f"label {label!r} is not one of {self.labels} (the spec's label_words)", line=line, field=self.label
            )
        if not label:
            raise DataError(path, "empty label", line=line, field=self.label)
        if self.kind == TaskKind.MULTIPLE_CHOICE:
            choices = row.get(self.choices)
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
                raise DataError(path, "must be a list of at least two non-empty strings", line=line, field=self.choices)
            choices = tuple(c.strip() for c in choices)
            if label.isdigit() and int(label) < len(choices):
                index = int(label)
            elif label in choices:
                index = choices.index(label)
            else:
                raise DataError(path, f"label {label!r} is neither a choice index (0-{len(choices) - 1}) nor one of the "
                                "choices", line=line, field=self.label)  # fmt: skip
            return Example(inputs=inputs, label=str(index), source=f"{path.name}:{line}", choices=choices)
        return Example(inputs=inputs, label=label, source=f"{path.name}:{line}")


def data_root() -> Path | None:
    """Where ``{data_root}`` points: ``$PROMPTOPT_DATA``, else the first ``shared/datasets`` found nearby."""
    env = os.environ.get("PROMPTOPT_DATA")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return None


def _expand(template: str, spec_path: Path | None, root) -> Path:
    root = Path(root) if root is not None else data_root()
    spec_dir = spec_path.parent if spec_path else Path.cwd()
    if "{data_root}" in template and root is None:
        root = Path("<data_root unset>")
    return Path(template.replace("{data_root}", str(root)).replace("{spec_dir}", str(spec_dir))).expanduser()


# -- reading rows ----------------------------------------------------------------------------------------------


def _read_rows(path: Path, source: SplitSource) -> list[tuple[int, dict]]:
    fmt = source.format or ("hf_disk" if path.is_dir() else path.suffix.lstrip(".").lower())
    if fmt not in FORMATS:
        raise DataError(path, f"unknown data format {fmt!r}; use one of {list(FORMATS)} (field 'format')")
    if fmt in ("parquet", "hf_disk"):
        return _read_arrow(path, fmt)
    text = read_utf8(path)
    if fmt == "jsonl":
        rows = []
        # split on "\n" only: U+2028 and friends are valid inside JSON strings (str.splitlines() would cut there)
        for i, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"not valid JSON: {e.msg} (column {e.colno})", line=i) from None
            if not isinstance(obj, dict):
                raise DataError(path, f"each line must be a JSON object, got {type(obj).__name__}", line=i)
            rows.append((i, obj))
        return rows
    if fmt == "json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
        if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
            raise DataError(path, "a .json data file must hold a list of objects")
        return [(i + 1, r) for i, r in enumerate(obj)]
    delimiter = source.delimiter or ("\t" if fmt == "tsv" else ",")
    quoting = QUOTING[source.quoting or ("none" if fmt == "tsv" else "minimal")]
    # a stream, not a list of lines: a quoted field may hold a newline
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    rows = []
    header = source.columns
    skip_header = source.header if source.header is not None else header is None
    for record in reader:
        line = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if skip_header:
            skip_header = False
            if header is None:
                header = [h.strip() for h in record]
            continue
        if len(record) != len(header):
            raise DataError(path, f"{len(record)} columns where the header has {len(header)} ({header})", line=line)
        rows.append((line, dict(zip(header, record))))
    return rows


def _read_arrow(path: Path, fmt: str) -> list[tuple[int, dict]]:
    """Rows of a Parquet file, or of a data set saved with Hugging Face ``datasets`` (``save_to_disk``: a folder
    with ``state.json`` naming Arrow stream files), read with pyarrow; row numbers count from 1."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(path, f"reading {fmt} data needs pyarrow: pip install pyarrow") from None
    try:
        if fmt == "parquet":
            table = pq.read_table(str(path))
        else:
            state = path / "state.json"
            if not state.exists():
                raise DataError(path, "not a saved data set: no state.json (made by datasets' save_to_disk)")
            names = [f["filename"] for f in json.loads(read_utf8(state)).get("_data_files", [])]
            if not names:
                raise DataError(state, "lists no data files (field '_data_files')")
            parts = []
            for name in names:
                with pa.memory_map(str(path / name)) as source:
                    parts.append(pa.ipc.open_stream(source).read_all())
            table = pa.concat_tables(parts)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, pa.ArrowException) as e:
        raise DataError(path, f"cannot read {fmt} data: {type(e).__name__}: {e}") from None
    return [(i + 1, row) for i, row in enumerate(table.to_pylist())]


def read_utf8(path: Path) -> str:
    """A file's text as UTF-8 (a leading byte-order mark, as spreadsheet exports write, is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text ({e.reason} at byte {e.start})", line=line) from None
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror}") from None


def _read_hub(source: SplitSource) -> list[tuple[int, dict]]:
    try:
        import datasets  # type: ignore
    except ImportError:
        raise PromptoptError(
            f"the local file is missing and reading the Hub data set {source.hub!r} needs the 'datasets' package: "
            "pip install 'promptopt[hub]'"
        ) from None
    ds = datasets.load_dataset(source.hub, source.hub_config, split=source.hub_split or "train")
    return [(i + 1, dict(row)) for i, row in enumerate(ds)]


# -- reading specs ---------------------------------------------------------------------------------------------


def _line_of(text: str, key: str) -> int | None:
    m = re.search(rf"^\s*\"?{re.escape(key)}\"?\s*[=:]", text, flags=re.M)
    return text[: m.start()].count("\n") + 1 if m else None


def _source_from_dict(obj: dict, spec_path, where: str) -> SplitSource:
    allowed = {"path", "format", "columns", "rename", "hub", "hub_config", "hub_split", "fractions", "seed", "min_words",
               "delimiter", "quoting", "header"}  # fmt: skip
    unknown = set(obj) - allowed
    if unknown:
        raise DataError(spec_path, f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}", field=where)
    if not obj.get("path") and not obj.get("hub"):
        raise DataError(spec_path, "needs 'path' (a local file) or 'hub' (a Hugging Face data set id)", field=where)
    fmt = obj.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise DataError(spec_path, f"format {fmt!r} is not one of {list(FORMATS)}", field=f"{where}.format")
    delimiter, quoting, header = obj.get("delimiter"), obj.get("quoting"), obj.get("header")
    if delimiter is not None and (not isinstance(delimiter, str) or len(decode_delimiter(delimiter)) != 1):
        raise DataError(spec_path, f"delimiter must be one character (or \\t), got {delimiter!r}", field=f"{where}.delimiter")
    if quoting is not None and quoting not in QUOTING:
        raise DataError(spec_path, f"quoting {quoting!r} is not one of {list(QUOTING)}", field=f"{where}.quoting")
    if header is not None and not isinstance(header, bool):
        raise DataError(spec_path, f"header must be true or false, got {header!r}", field=f"{where}.header")
    if header is False and not obj.get("columns"):
        raise DataError(spec_path, "header = false needs 'columns' (the names of the fields, in order)", field=f"{where}.columns")
    min_words = obj.get("min_words", 0)
    if not isinstance(min_words, int) or isinstance(min_words, bool) or min_words < 0:
        raise DataError(spec_path, f"min_words must be a whole number >= 0, got {min_words!r}", field=f"{where}.min_words")
    return SplitSource(
        min_words=min_words,
        path=obj.get("path"),
        format=fmt,
        columns=obj.get("columns"),
        rename=dict(obj.get("rename") or {}),
        hub=obj.get("hub"),
        hub_config=obj.get("hub_config"),
        hub_split=obj.get("hub_split"),
        delimiter=decode_delimiter(delimiter) if delimiter is not None else None,
        quoting=quoting,
        header=header,
    )


def decode_delimiter(text: str) -> str:
    return "\t" if text in ("\\t", "tab") else text


def parse_task_spec(path: str | Path) -> TaskSpec:
    """Read and check a task spec file (``.toml`` or ``.json``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "task spec file does not exist")
    if path.is_dir():
        raise DataError(path, "is a directory, not a task spec file (.toml or .json)")
    text = read_utf8(path)
    try:
        if path.suffix == ".json":
            obj = json.loads(text)
        else:
            obj = tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise DataError(path, f"not valid TOML: {e}", line=int(m.group(1)) if m else None) from None
    if not isinstance(obj, dict):
        raise DataError(path, "a task spec must be a table/object")

    def fail(key, message):
        raise DataError(path, message, line=_line_of(text, key.split(".")[-1]), field=key)

    allowed = {
        "name", "kind", "description", "inputs", "label", "label_words", "label_names", "templates", "metric",
        "splits", "split_from", "scoring", "choices", "kshot",
    }  # fmt: skip
    for key in obj:
        if key not in allowed:
            fail(key, f"unknown key; allowed keys: {sorted(allowed)}")
    for key in ("name", "inputs", "templates"):
        if key not in obj:
            raise DataError(path, f"missing required key {key!r}", field=key)
    name = obj["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        fail("name", "must be letters, digits, '_', '-' or '.'")
    try:
        kind = TaskKind(obj.get("kind", "classification"))
    except ValueError:
        fail("kind", f"{obj.get('kind')!r} is not one of {[k.value for k in TaskKind]}")
    inputs = obj["inputs"]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        fail("inputs", "must be a non-empty list of field names")
    label = obj.get("label", "label")
    label_words: dict[str, list[str]] = {}
    raw_words = obj.get("label_words")
    if kind == TaskKind.CLASSIFICATION:
        if not isinstance(raw_words, dict) or len(raw_words) < 2:
            fail("label_words", "a classification task needs a table of at least two labels -> word(s)")
        for lab, words in raw_words.items():
            words = [words] if isinstance(words, str) else words
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                fail(f"label_words.{lab}", "must be a non-empty word or list of non-empty words")
            label_words[str(lab)] = [w.strip() for w in words]
        owner: dict[str, str] = {}
        for lab, words in label_words.items():
            for w in words:
                if w in owner and owner[w] != lab:
                    fail(f"label_words.{lab}", f"word {w!r} is also a label word of {owner[w]!r}; each class needs its own words")
                owner[w] = lab
    elif raw_words:
        answers = "any vocabulary token" if kind == TaskKind.FACT_RETRIEVAL else "one of each example's choices"
        fail("label_words", f"a {kind.value} task answers with {answers}; it takes no label_words")
    templates = obj["templates"]
    if isinstance(templates, str):
        templates = [templates]
    if not isinstance(templates, list) or not templates:
        fail("templates", "must be a non-empty list of template strings")
    for t in templates:
        try:
            segs = parse_template(t)
        except TemplateError as e:
            fail("templates", str(e))
        for s in segs:
            if s.kind.value == "field" and s.field not in inputs:
                fail("templates", f"template {t!r} uses {{{s.field}}}, which is not in inputs {inputs}")
    scoring = obj.get("scoring", "loglik")
    rules = ("loglik", "norm_token", "norm_char", "calibrated")
    if scoring not in rules or (scoring != "loglik" and kind == TaskKind.FACT_RETRIEVAL):
        fail("scoring", f"{scoring!r} is not one of {list(rules) if kind != TaskKind.FACT_RETRIEVAL else ['loglik']}")
    choices = obj.get("choices", "choices")
    if not isinstance(choices, str) or (kind != TaskKind.MULTIPLE_CHOICE and "choices" in obj):
        fail("choices", "the name of the field holding each example's choices (multiple_choice tasks only)")
    default_metric = "p_at_1" if kind == TaskKind.FACT_RETRIEVAL else "accuracy"
    try:
        metric = Metric(obj.get("metric", default_metric))
    except ValueError:
        fail("metric", f"{obj.get('metric')!r} is not one of {[m.value for m in Metric]}")
    if kind == TaskKind.MULTIPLE_CHOICE and metric != Metric.ACCURACY:
        fail("metric", "a multiple_choice task is scored by accuracy")
    splits: dict[str, SplitSource] = {}
    split_from = obj.get("split_from")
    raw_splits = obj.get("splits") or {}
    if not isinstance(raw_splits, dict):
        fail("splits", "must be a table of split name -> source")
    for split, conf in raw_splits.items():
        if split not in SPLITS:
            fail(f"splits.{split}", f"unknown split; use {list(SPLITS)}")
        if not isinstance(conf, dict):
            fail(f"splits.{split}", "must be a table with 'path' and/or 'hub'")
        splits[split] = _source_from_dict(conf, path, f"splits.{split}")
    if split_from is not None:
        if raw_splits:
            fail("split_from", "give either 'splits' or 'split_from', not both")
        _source_from_dict(split_from, path, "split_from")
        fractions = split_from.get("fractions")
        if not isinstance(fractions, dict) or not set(fractions) <= set(SPLITS):
            fail("split_from", f"needs 'fractions', a table of {list(SPLITS)} -> fraction")
        if abs(sum(float(v) for v in fractions.values()) - 1.0) > 1e-6 and sum(float(v) for v in fractions.values()) > 1:
            fail("split_from", "fractions add up to more than 1")
    if not splits and split_from is None:
        raise DataError(path, "needs 'splits' (train/dev/test sources) or 'split_from'", field="splits")
    kshot = _kshot_from_dict(obj["kshot"], path, text, splits) if "kshot" in obj else None
    return TaskSpec(
        name=name,
        kind=kind,
        inputs=inputs,
        scoring=scoring,
        choices=choices,
        label=label,
        label_words=label_words,
        templates=templates,
        metric=metric,
        splits=splits,
        path=path,
        description=obj.get("description", ""),
        split_from=split_from,
        label_names={str(k): str(v) for k, v in (obj.get("label_names") or {}).items()},
        kshot=kshot,
    )


def _kshot_from_dict(obj, path: Path, text: str, splits: dict[str, SplitSource]) -> KShot:
    """The ``kshot`` table: ``train`` and ``dev`` sources whose ``path`` holds ``{k}`` and ``{seed}``, and
    ``test`` (default ``"test"``), one of the spec's ``splits``."""
    if not isinstance(obj, dict):
        raise DataError(path, "must be a table with 'train' and 'dev' sources", line=_line_of(text, "kshot"),
                        field="kshot")  # fmt: skip
    unknown = set(obj) - {"train", "dev", "test"}
    if unknown:
        raise DataError(path, f"unknown keys {sorted(unknown)}; allowed: ['dev', 'test', 'train']", field="kshot")
    sources = {}
    for split in ("train", "dev"):
        conf = obj.get(split)
        if not isinstance(conf, dict) or not isinstance(conf.get("path"), str):
            raise DataError(path, "needs a table with 'path' (a file pattern with {k} and {seed})",
                            field=f"kshot.{split}")  # fmt: skip
        if "{k}" not in conf["path"] or "{seed}" not in conf["path"]:
            raise DataError(path, f"path {conf['path']!r} must hold {{k}} and {{seed}}", field=f"kshot.{split}.path")
        sources[split] = _source_from_dict(conf, path, f"kshot.{split}")
    test = obj.get("test", "test")
    if test not in splits:
        raise DataError(path, f"{test!r} is not one of the spec's splits {sorted(splits)}", field="kshot.test")
    return KShot(sources=sources, test=test)


@dataclass
class TaskCheck:
    """What :func:`check_task` found: per split its size and label counts, every problem (the task cannot be used
    as it is), every warning (it can, but look: e.g. examples shared between splits), one line each."""

    name: str
    splits: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_task(spec: TaskSpec) -> TaskCheck:
    """Read every split of a task without a model: sizes, label counts, and every problem found (a split that does
    not load, a label with no example) and warning (an example found in two splits), each as one line."""
    out = TaskCheck(spec.name)
    texts: dict[str, set] = {}
    for split in spec.available_splits:
        try:
            examples = spec.load_split(split)
        except PromptoptError as e:
            out.problems.append(f"split {split}: {e}")
            continue
        counts: dict[str, int] = {}
        for ex in examples:
            counts[ex.label] = counts.get(ex.label, 0) + 1
        out.splits[split] = {"examples": len(examples), "labels": dict(sorted(counts.items()))}
        if spec.kind == TaskKind.CLASSIFICATION:
            missing = [label for label in spec.label_words if label not in counts]
            if missing:
                out.problems.append(f"split {split}: no example of label(s) {missing}")
        texts[split] = {tuple(sorted(ex.inputs.items())) for ex in examples}
    names = list(texts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = len(texts[a] & texts[b])
            if shared:
                out.warnings.append(f"splits {a} and {b} share {shared} example(s) with the same inputs")
    if not spec.available_splits:
        out.problems.append("the spec names no split")
    out.notes.append("label words are checked against a tokenizer when a run loads the model")
    return out
