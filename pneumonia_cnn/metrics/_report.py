"""The JSON and text forms of an evaluation result."""

from __future__ import annotations

import numpy as np

__all__ = ["public_metrics", "report_text", "strict_json"]


def public_metrics(result: dict) -> dict:
    """The JSON-serialisable part of an :func:`evaluate` result (all but ``per_image``),
    with NaN (e.g. the ROC AUC of a one-class set) as None: strict JSON has no NaN."""
    return strict_json({k: v for k, v in result.items()
                    if k != "per_image" and not k.startswith("_")})


def strict_json(value):
    """``value`` with NaN and infinity as None and NumPy scalars as Python ones: what
    ``json.dumps(..., allow_nan=False)`` accepts (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def report_text(result: dict) -> str:
    """The classification report, headed by the data, threshold and (for the demo) a
    SYNTHETIC warning."""
    head = (f"{'SYNTHETIC DATA (drawn images, not radiographs) - ' if result.get('synthetic') else ''}"
            f"{result.get('data', '')}: {result['n_images']} images, threshold "
            f"{result['threshold']:.3f}\n\n")
    return head + result["classification_report_text"]
