"""The README shows real output and valid specs."""

import re
import subprocess
import sys
from pathlib import Path

import models
import pytest

from multilr import Spec, plan

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _recipes() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "recipes.py")], capture_output=True, text=True, check=True
    ).stdout
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^## (\S+)\n(.*?)(?=^## |\Z)", out, re.S | re.M)}


def test_readme_shows_what_the_recipes_print():
    recipes = _recipes()
    assert set(recipes) == {"head-backbone", "bert-layer-decay", "seed-000"}
    for name, text in recipes.items():
        assert text in README, f"README does not show the current output of recipe {name!r}:\n{text}"


@pytest.mark.parametrize("index", range(len(re.findall(r"```yaml\n", README))))
def test_readme_yaml_specs_are_valid(index):
    block = re.findall(r"```yaml\n(.*?)```", README, re.S)[index]
    spec = Spec.from_yaml(block)
    assert Spec.from_dict(spec.to_dict()) == spec
    plan(models.resnet18(width=4), spec)  # resolves against a ResNet-18 without error


def test_readme_conformance_example_runs():
    """The README's check_backend example, run as written with the torch backend as "mybackend"."""
    pytest.importorskip("multilr_torch")
    from multilr_torch import TorchBackend

    from multilr import register_backend

    class Mine(TorchBackend):
        name = "mybackend"

    from multilr import _registry

    register_backend("mybackend", Mine)
    block = README.split("<!-- conformance-example")[1].split("```python\n")[1].split("```")[0]
    try:
        exec(compile(block, "README.md conformance example", "exec"), {})
    finally:
        _registry._registered.pop("mybackend", None)
        _registry._instances.pop("mybackend", None)
