"""Findings: a few plain sentences about hard against soft prompts, every number taken from the leaderboard's rows
and comparisons (nothing is written by hand), as Markdown.

Per (model, task) the group read is the variant with the most rows (the k-shot protocol's, when a data-efficiency
suite adds training-set sizes to one task). Hard prompts are the rows of kind ``hard``, soft prompts those of kind
``soft`` or ``deep``; a side *wins* only when the paired test between the two best rows says so (Holm p < 0.05).
"""

from __future__ import annotations

from . import fmt
from .model import BASELINE, Comparison, Leaderboard, Row

SOFT_KINDS = ("soft", "deep")


def _best(rows: list[Row], kinds: tuple[str, ...]) -> Row | None:
    return next((r for r in rows if r.kind in kinds and r.mean is not None), None)


def _comparison(board: Leaderboard, a: Row, b: Row) -> Comparison | None:
    return next((c for c in board.comparisons if (c.model, c.task, c.variant) == (a.model, a.task, a.variant)
                 and {c.a, c.b} == {a.method, b.method}), None)  # fmt: skip


def _score(row: Row) -> str:
    spread = row.seed_low is not None and row.seed_low != row.seed_high
    interval = f" [{fmt.percent(row.seed_low)}, {fmt.percent(row.seed_high)}]" if spread else ""
    return f"{fmt.percent(row.mean)}%{interval}"


def _main_group(board: Leaderboard, model: str, task: str) -> list[Row]:
    rows = board.rows_of(model, task)
    variants = board.variants_of(model, task)
    main = max(variants, key=lambda v: sum(r.variant == v for r in rows))
    return [r for r in rows if r.variant == main]


def _test(c: Comparison | None) -> str:
    if c is None or c.p_holm is None:
        return "no paired test was possible"
    return f"{fmt.comparison_test(c)}, Holm p = {fmt.pvalue(c.p_holm)}, n = {c.n:,}"


def _verdict(board: Leaderboard, hard: Row, soft: Row) -> tuple[str, str]:
    """(outcome, sentence): outcome ``soft``, ``hard`` or ``tie``."""
    c = _comparison(board, hard, soft)
    ahead, behind = (soft, hard) if soft.mean >= hard.mean else (hard, soft)
    gap = 100 * (ahead.mean - behind.mean)
    won = c is not None and c.significant
    outcome = ("soft" if ahead is soft else "hard") if won else "tie"
    what = "a significant difference" if won else "not a significant difference: a tie, so soft prompts do not win here"
    if won and ahead is hard:
        what += ", so soft prompts do not win here"
    sentence = (f"the best soft prompt, {soft.method} ({soft.kind}, {soft.trainable_parameters:,} trainable "
                f"parameters), scores {_score(soft)} and the best hard prompt, {hard.method}, {_score(hard)}: "
                f"{ahead.method} is {gap:.1f} points ahead, {what} ({_test(c)}).")  # fmt: skip
    return outcome, sentence


def _baseline_sentences(board: Leaderboard, group: list[Row]) -> list[str]:
    out = []
    for base in (r for r in group if r.kind == BASELINE and r.mean is not None):
        methods = [r for r in group if r.kind != BASELINE and r.mean is not None]
        not_above = []
        for r in methods:
            c = _comparison(board, r, base)
            if c is None or not c.significant or c.a != r.method:
                not_above.append(r.method)
        if not methods:
            continue
        if not_above:
            out.append(f"{len(not_above)} of {len(methods)} methods are not significantly above the {base.method} "
                       f"baseline ({_score(base)}): {', '.join(not_above)}.")  # fmt: skip
        else:
            out.append(f"Every method is significantly above the {base.method} baseline ({_score(base)}).")
    return out


def _efficiency_sentences(board: Leaderboard) -> list[str]:
    out = []
    for model, task, rest, curves in board.efficiency():
        parts = []
        each = fmt.per_class(curves)
        for method, rows in curves.items():
            points = ", ".join(f"{_score(r)} at {fmt.number(fmt.size_of(r, each), 0)}" for r in rows)
            parts.append(f"{method} {points}")
        where = f"{task}" + (f" ({rest})" if rest else "")
        unit = "training examples per class" if each else "training examples"
        out.append(f"- On {where}, score against {unit}: " + "; ".join(parts) + ".")
    return out


UNSTABLE = 0.10  # a seed standard deviation of 10 points or more: the training sample decides the row's place


def _spread_sentence(board: Leaderboard, model: str) -> str | None:
    """The rows whose seeds disagree most (sample standard deviation of at least :data:`UNSTABLE`), with each
    seed's score: where one training sample (a collapsed seed) moves a mean more than any method difference."""
    rows = sorted((r for r in board.rows if r.model == model and r.kind != "baseline" and r.std is not None
                   and r.std >= UNSTABLE), key=lambda r: -r.std)  # fmt: skip
    if not rows:
        return None
    items = [f"{r.task}{f' ({r.variant})' if r.variant else ''} {r.method} {fmt.percent(r.std)} points "
             f"({', '.join(fmt.percent(v) for v in r.scores)})" for r in rows]  # fmt: skip
    return (f"Seeds disagree: {len(rows)} {'rows have' if len(rows) != 1 else 'row has'} a seed standard deviation of "
            f"{fmt.percent(UNSTABLE)} points or more, so the training sample decides where they land more than the "
            f"method does: " + "; ".join(items) + ".")


def render_findings(board: Leaderboard) -> str:
    """The findings as Markdown: a summary line (on how many tasks soft prompts win, tie, lose), one paragraph per
    task (best soft against best hard prompt with the paired test, adapters, baselines), the data-efficiency
    curves, and where the numbers come from."""
    lines = [f"# Findings: {board.title}", ""]
    ok = len(board.finished)
    lines += [f"Generated from the leaderboard's {ok:,} finished runs by `promptopt report --format findings`; every "
              "number is a row of the leaderboard (mean over seeds, 95% t-interval over seeds in brackets) or one "
              "of its paired tests.", ""]  # fmt: skip
    if board.meta.get("progress"):
        lines += [f"**The suite is {board.meta['progress']}**: what follows may change as the rest finish.", ""]
    for model in board.models:
        outcomes: dict[str, list[str]] = {"soft": [], "hard": [], "tie": []}
        paragraphs = []
        for task in board.tasks:
            group = _main_group(board, model, task)
            if not group:
                continue
            hard, soft = _best(group, ("hard",)), _best(group, SOFT_KINDS)
            text = [f"- **{task}**" + (f" ({group[0].variant})" if group[0].variant else "") + ":"]
            if hard is not None and soft is not None:
                outcome, sentence = _verdict(board, hard, soft)
                outcomes[outcome].append(task)
                text.append(sentence[0].upper() + sentence[1:])
            else:
                missing = "hard" if hard is None else "soft"
                text.append(f"no {missing} prompt finished, so hard and soft prompts are not compared.")
            adapter = _best(group, ("adapter",))
            if adapter is not None:
                text.append(f"The best weight-changing reference, {adapter.method}, scores {_score(adapter)} with "
                            f"{adapter.trainable_parameters:,} trainable parameters.")  # fmt: skip
            text += _baseline_sentences(board, group)
            paragraphs.append(" ".join(text))
        compared = sum(len(v) for v in outcomes.values())
        if compared:
            def named(tasks):
                return f"{len(tasks)} ({', '.join(tasks)})" if tasks else "0"

            lines += [f"## {model}", "",
                      f"Of {compared} task{'s' if compared != 1 else ''} where both finished, soft prompts win "
                      f"significantly on {named(outcomes['soft'])}, hard prompts win on {named(outcomes['hard'])}, "
                      f"and the two tie on {named(outcomes['tie'])}.", ""]  # fmt: skip
        else:
            lines += [f"## {model}", ""]
        lines += paragraphs + [""]
        spread = _spread_sentence(board, model)
        if spread:
            lines += [spread, ""]
    efficiency = _efficiency_sentences(board)
    if efficiency:
        lines += ["## Data efficiency", ""] + efficiency + [""]
    lines += ["A side wins only when the paired test on the same test examples says so (exact McNemar test on the "
              "discordant examples for accuracy, else a paired bootstrap; Holm-adjusted p < 0.05 over the pairs of "
              "each task). The leaderboard holds every row, interval and test.", ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"
