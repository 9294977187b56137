"""Views of an inspection record (the JSON ``promptopt inspect`` writes, schema version 1 or 2) used by the renderers."""

from __future__ import annotations


def soft_summary(inspection: dict | None) -> dict | None:
    """Soft vectors of an inspected prompt summarised, or None if it has none.

    Besides the nearest tokens and the projection: ``ranking`` (per ablation mode, the vectors by the points their
    ablation costs, largest first), ``lens`` (per ``(segment, index)``, the readings by layer), ``readable`` (the
    distilled prompt, its score and remaining gap in points), ``eval`` (scores on the inspection's eval split),
    ``self_description`` and ``wayward``; empty or None where the record has none (e.g. version 1)."""
    if not inspection:
        return None
    segments = [s for s in inspection.get("segments") or [] if s.get("vectors")]
    if not segments:
        return None
    norms = [v["norm"] for s in segments for v in s["vectors"]]
    soft, projected = inspection.get("soft_score"), inspection.get("projected_score")
    ranking: dict[str, list[dict]] = {}
    for a in inspection.get("ablations") or []:
        ranking.setdefault(a["mode"], []).append(a)
    ranking = {mode: sorted(rows, key=lambda a: -a["drop"]) for mode, rows in ranking.items()}
    lens: dict[tuple[str, int], list[dict]] = {}
    for r in inspection.get("lens") or []:
        lens.setdefault((r["segment"], r["index"]), []).append(r)
    readable = inspection.get("readable")
    if readable:
        readable = {**readable, "gap_points": None if soft is None else 100 * (soft - readable["score"])}
    return {
        "segments": segments,
        "vectors": len(norms),
        "mean_norm": sum(norms) / len(norms),
        "embedding_norm": inspection.get("embedding_norm_mean"),
        "split": inspection.get("split"),
        "n": inspection.get("n", 0),
        "soft_score": soft,
        "projected_score": projected,
        "gap_points": None if soft is None or projected is None else 100 * (soft - projected),
        "projected_text": inspection.get("projected_text"),
        "ranking": ranking,
        "lens": lens,
        "readable": readable,
        "eval_split": inspection.get("eval_split"),
        "eval_n": inspection.get("eval_n", 0),
        "eval": inspection.get("eval_scores") or {},
        "self_description": inspection.get("self_description"),
        "wayward": inspection.get("wayward"),
        "notes": inspection.get("notes") or [],
    }


def hard_token_segments(inspection: dict | None) -> list[dict]:
    """The discrete token segments (e.g. found by a search method) of an inspected prompt: name, text, ids."""
    if not inspection:
        return []
    return [s for s in inspection.get("segments") or [] if s.get("kind") == "tokens" and s.get("ids")]
