"""Metrics: accuracy, macro-F1 (scikit-learn), per-class counts, P@1 for fact retrieval."""

from __future__ import annotations

from promptopt.data.tasks import TaskKind, TaskSpec


def compute_metrics(task: TaskSpec, golds: list[str], preds: list[str]) -> dict:
    """All metrics for one evaluation; ``score`` is the task's chosen metric."""
    n = len(golds)
    correct = sum(g == p for g, p in zip(golds, preds))
    out: dict = {"n": n, "accuracy": correct / n if n else 0.0}
    if task.kind == TaskKind.FACT_RETRIEVAL:
        out["p_at_1"] = out["accuracy"]
    elif task.kind == TaskKind.CLASSIFICATION:
        from sklearn.metrics import f1_score

        labels = task.labels
        out["macro_f1"] = float(f1_score(golds, preds, labels=labels, average="macro", zero_division=0))
        out["per_class"] = {
            lab: {
                "support": sum(g == lab for g in golds),
                "predicted": sum(p == lab for p in preds),
                "correct": sum(g == lab == p for g, p in zip(golds, preds)),
            }
            for lab in labels
        }
    out["score"] = out[task.metric.value]
    return out
