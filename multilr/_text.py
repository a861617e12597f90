"""JSON and YAML text to plain data, with one error shape for every reader.

Specs, schedules on the command line and rate histories all come as text that people
edit; each reader names what it was reading (``what``) and gets a :class:`SpecError`
instead of the parser's own exception. YAML is read with ``safe_load`` only: nothing
in it is ever run as code, and numbers are read as YAML 1.2 does (``1e-8`` is a float).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from multilr.errors import SpecError

__all__ = ["dump_yaml", "parse_json", "parse_yaml"]


def parse_json(text: str, what: str) -> Any:
    """``json.loads(text)``.

    Raises:
        SpecError: ``"<what> is not valid JSON: ..."`` (or not usable: nested past the
            recursion limit, an integer past 4,300 digits).

    Example:
        >>> parse_json('{"lr": 0.1}', "spec")
        {'lr': 0.1}
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{what} is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer past Python's 4,300-digit limit
        raise SpecError(f"{what} is not usable JSON: {exc}") from None
    except RecursionError:
        raise SpecError(f"{what} is not usable JSON: nested too deeply") from None


#: YAML 1.2's float with no dot (``1e-8``, ``5E3``), which YAML 1.1 and so PyYAML read
#: as a string: an optimizer handed ``eps: "1e-8"`` fails only at its first step.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


def _with_exponent_floats(base: Any) -> Any:
    """A subclass of PyYAML's ``base`` loader or dumper that resolves ``1e-8`` as a float."""

    class Yaml12Floats(base):  # type: ignore[misc,valid-type]
        pass

    Yaml12Floats.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))
    return Yaml12Floats


@cache
def _loader() -> Any:
    """``yaml.SafeLoader`` that also reads YAML 1.2 floats without a dot (``1e-8``)."""
    import yaml

    return _with_exponent_floats(yaml.SafeLoader)


def _yaml(doing: str) -> Any:
    """The ``yaml`` module, or a SpecError naming the extra that installs it (PyYAML is optional)."""
    try:
        import yaml
    except ImportError:
        raise SpecError(f"{doing} YAML needs PyYAML: pip install 'multilr[yaml]'") from None
    return yaml


def parse_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load(text)``, with ``1e-8`` read as a number (YAML 1.2) and not a string.

    Raises:
        SpecError: PyYAML is missing (names the extra to install), or
            ``"<what> is not valid YAML: ..."``; a ``!!python/...`` tag is refused there.

    Example:
        >>> parse_yaml("lr: 1.0e-3", "spec")
        {'lr': 0.001}
        >>> parse_yaml("hyper: {eps: 1e-8, betas: [0.9, 0.999]}", "spec")
        {'hyper': {'eps': 1e-08, 'betas': [0.9, 0.999]}}
    """
    yaml = _yaml("reading")
    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader subclass: safe_load plus 1e-8
    except yaml.YAMLError as exc:
        raise SpecError(f"{what} is not valid YAML: {exc}") from None
    except ValueError as exc:  # a date like 2024-13-45, an integer past 4,300 digits
        raise SpecError(f"{what} is not usable YAML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{what} is not usable YAML: nested too deeply") from None


@cache
def _dumper() -> Any:
    """``yaml.SafeDumper`` that quotes what :func:`_loader` would read back as a float."""
    import yaml

    # PyYAML writes the string "1e-3" bare (YAML 1.1 reads it as a string); read back
    # as YAML 1.2 does, it would come back a float: the same resolver makes it quote it
    return _with_exponent_floats(yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    """``yaml.safe_dump(data)`` in block style, keys in order, read back equal by :func:`parse_yaml`.

    Raises:
        SpecError: PyYAML is missing (names the extra to install).

    Example:
        >>> text = dump_yaml({"lr": 1e-3, "rules": [{"prefix": "1e5", "lr_mult": 2}]})
        >>> print(text, end="")
        lr: 0.001
        rules:
        - prefix: '1e5'
          lr_mult: 2
        >>> parse_yaml(text, "spec")["rules"][0]["prefix"]
        '1e5'
    """
    text: str = _yaml("writing").dump(data, Dumper=_dumper(), sort_keys=False)
    return text
