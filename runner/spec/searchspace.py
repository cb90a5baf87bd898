"""What a search may vary (`search.space`), where each key lives in the spec, and the rule that every
value a trial can draw is a valid setting of that place (the schema's limits; whole epochs train at least
one). Light: `runner validate` checks the space without importing Optuna."""

from __future__ import annotations

DEFAULT_SPACE = {
    "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
    "batch_size": {"choices": [8, 16, 32]},
    "epochs": {"low": 1, "high": 5},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "lora_r": {"choices": [4, 8, 16, 32]},
}
WHOLE_NUMBERS = ("batch_size", "epochs", "lora_r")
# search key -> (the spec's place for it, the TrainingArguments field a trial sets; None: the model's)
PLACES = {
    "learning_rate": (("train", "learning_rate"), "learning_rate"),
    "batch_size": (("train", "batch_size"), "per_device_train_batch_size"),
    "epochs": (("train", "epochs"), "num_train_epochs"),
    "weight_decay": (("train", "weight_decay"), "weight_decay"),
    "warmup_ratio": (("train", "warmup_ratio"), "warmup_steps"),  # below 1: a share of the steps
    "lora_r": (("lora", "r"), None),
}


def space_of(values: dict) -> dict:
    """The space searched: the spec's own, or the default (the LoRA rank only with LoRA)."""
    given = values["search"]["space"]
    if given:
        return {key: bounds for key, bounds in given.items() if bounds}
    return {key: bounds for key, bounds in DEFAULT_SPACE.items() if key != "lora_r" or values["lora"]}


def drawn_values(key: str, bounds: dict) -> list:
    """The values that bound what a trial draws for `key`: the choices, or low and high."""
    values = list(bounds["choices"]) if bounds.get("choices") else [bounds.get("low"), bounds.get("high")]
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def out_of_limits(key: str, bounds: dict, schema: dict) -> str | None:
    """Why a value a trial can draw for `key` is not a valid setting of its place (None: every one is)."""
    (section, name), _ = PLACES[key]
    limits = schema["properties"][section]
    limits = next((s for s in limits.get("anyOf", [limits]) if "properties" in s), limits)["properties"][name]
    for given in drawn_values(key, bounds):
        value = int(given) if key in WHOLE_NUMBERS else given  # a trial draws whole numbers here
        if key == "epochs" and value < 1:
            return f"epochs {given} is {value} whole epochs for a trial: it trains no step"
        if "minimum" in limits and value < limits["minimum"]:
            return f"{value} is below {section}.{name}'s minimum {limits['minimum']}"
        if "exclusiveMinimum" in limits and value <= limits["exclusiveMinimum"]:
            return f"{value} is not above {section}.{name}'s minimum {limits['exclusiveMinimum']}"
        if "maximum" in limits and value > limits["maximum"]:
            return f"{value} is above {section}.{name}'s maximum {limits['maximum']}"
        if "exclusiveMaximum" in limits and value >= limits["exclusiveMaximum"]:
            return f"{value} is not below {section}.{name}'s maximum {limits['exclusiveMaximum']}"
    return None
