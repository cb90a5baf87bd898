"""The flows keep the declared contract (runner.flows.contract): each module has every name of its Protocol,
and each function takes the Protocol's parameters, in order."""

from __future__ import annotations

import inspect

import pytest

from runner.flows import contract, crossval, recipe, search, single


def members(protocol) -> dict:
    """The Protocol's functions (name -> parameter names, `self` left out) and its attributes."""
    out = {}
    for klass in protocol.__mro__:
        if klass in (contract.Flow, contract.TrainingFlow):
            for name, value in vars(klass).items():
                if inspect.isfunction(value) and not name.startswith("_"):
                    out.setdefault(name, [p for p in inspect.signature(value).parameters][1:])
            for name in getattr(klass, "__annotations__", {}):
                out.setdefault(name, None)
    return out


def broken_promises(module, protocol) -> list[str]:
    found = []
    for name, parameters in members(protocol).items():
        if not hasattr(module, name):
            found.append(f"no {name}")
        elif parameters is not None and list(inspect.signature(getattr(module, name)).parameters) != parameters:
            found.append(f"{name}{inspect.signature(getattr(module, name))} is not {name}({', '.join(parameters)})")
        elif parameters is None and not isinstance(getattr(module, name), bool):
            found.append(f"{name} is not a bool")
    return found


@pytest.mark.parametrize(("module", "protocol"), [(single, contract.TrainingFlow), (crossval, contract.TrainingFlow),
                                                  (search, contract.Flow)])
def test_each_flow_keeps_its_contract(module, protocol):
    assert isinstance(module, protocol)
    assert not broken_promises(module, protocol), broken_promises(module, protocol)


def test_the_contract_check_finds_a_missing_name_and_a_changed_signature():
    import types

    fake = types.ModuleType("fake_flow")
    fake.RESUMABLE = True
    fake.describe = lambda spec: ""
    fake.load = lambda spec, folder, extra: None
    problems = broken_promises(fake, contract.TrainingFlow)
    assert "load(spec, folder, extra) is not load(spec, folder)" in problems and "no evaluate" in problems
    assert not broken_promises(fake, contract.Flow)
    assert not isinstance(fake, contract.TrainingFlow)


def test_the_recipe_picks_a_training_flow_for_either_spec():
    assert inspect.signature(recipe.flow_of).return_annotation in ("TrainingFlow", contract.TrainingFlow)
    cv = type("S", (), {"data": type("D", (), {"cross_validation": {"folds": 3}})()})()
    one = type("S", (), {"data": type("D", (), {"cross_validation": None})()})()
    assert recipe.flow_of(cv) is crossval and recipe.flow_of(one) is single
