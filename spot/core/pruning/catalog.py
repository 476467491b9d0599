"""The pruning methods by name and their settings, without torch (what configs are checked against when the
workflow builds its DAG). :func:`spot.core.pruning.methods.register` refuses a method class whose settings differ from its
line here, so the two cannot drift: a new method is one class and one line."""
from __future__ import annotations

METHOD_SETTINGS: dict[str, tuple[str, ...]] = {
    "spot_ad": ("d_remap", "statistics", "dynamics", "heads", "shared", "attention"),
    "dynamicvit": ("d_remap", "shared"),
    "heuristic": (),
    "evit": ("fuse",),
    "tome": ("r", "prop_attn"),
}
LEARNED = ("spot_ad", "dynamicvit")  # methods with a trained predictor (the others need no fine-tune to run)
# methods whose stages act on the stage block's input (the block runs on the kept tokens), not after its attention
BEFORE_BLOCK = ("dynamicvit",)


def check_method(method: str, settings: dict | None = None, where: str = "method") -> None:
    """ValueError naming the problem for an unknown method or setting."""
    if method not in METHOD_SETTINGS:
        raise ValueError(f"{where}: unknown pruning method {method!r}; accepted: {', '.join(METHOD_SETTINGS)}")
    unknown = sorted(set(settings or {}) - set(METHOD_SETTINGS[method]))
    if unknown:
        raise ValueError(f"{where}: pruning method {method!r} accepts settings "
                         f"{list(METHOD_SETTINGS[method]) or 'none'}, got {unknown}")
