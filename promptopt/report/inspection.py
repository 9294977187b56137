"""Views of an inspection record (the JSON ``promptopt inspect`` writes) used by the renderers."""

from __future__ import annotations


def soft_summary(inspection: dict | None) -> dict | None:
    """Soft vectors of an inspected prompt summarised, or None if it has none."""
    if not inspection:
        return None
    segments = [s for s in inspection.get("segments") or [] if s.get("vectors")]
    if not segments:
        return None
    norms = [v["norm"] for s in segments for v in s["vectors"]]
    soft, projected = inspection.get("soft_score"), inspection.get("projected_score")
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
    }


def hard_token_segments(inspection: dict | None) -> list[dict]:
    """The discrete token segments (e.g. found by a search method) of an inspected prompt: name, text, ids."""
    if not inspection:
        return []
    return [s for s in inspection.get("segments") or [] if s.get("kind") == "tokens" and s.get("ids")]
