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
