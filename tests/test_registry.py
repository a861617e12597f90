import pytest

import multilr
from multilr import BackendError, BackendNotFoundError, ParamInfo, Spec, build, get_backend, register_backend
from multilr._plan import resolve
from multilr._registry import KNOWN_BACKENDS, _registered
from multilr._spec import as_spec
from multilr.backend import ParamTable, _members_by_position, attach_params, attach_table


class ListBackend:
    """A third-party backend over plain lists of (name, value) pairs."""

    name, convention = "lists", "lr"

    def extract(self, model):
        return [ParamInfo(n, (1,), "float64", "", ("Param",), True, n) for n, _ in model]

    def emit(self, model, plan):
        return attach_params(plan, self.convention, dict(model))


@pytest.fixture
def lists_backend():
    register_backend("lists", ListBackend)
    yield
    _registered.pop("lists", None)
    multilr._registry._instances.pop("lists", None)


def test_registered_backend_builds(lists_backend):
    assert "lists" in multilr.list_backends()
    groups = build([("a", 1.0), ("b", 2.0)], {"lr": 0.1, "rules": [{"glob": "b", "lr_mult": 2}]}, backend="lists")
    assert [(g["name"], g["lr"], g["params"]) for g in groups] == [("default", 0.1, [1.0]), ("glob:b", 0.2, [2.0])]
    assert groups.plan.rates() == {"a": 0.1, "b": 0.2} and groups.backend == "lists"


def test_backend_instance_passes_through():
    be = ListBackend()
    assert get_backend(be) is be
    assert build([("a", 1.0)], Spec(lr=1), backend=be)[0]["lr"] == 1


def test_unknown_backend_lists_installed_and_suggests():
    with pytest.raises(BackendNotFoundError, match=r"unknown backend 'toch' \(did you mean 'torch'\?\); "
                                                   r"installed backends: .*torch"):
        get_backend("toch")


def test_known_backend_not_installed_names_the_package():
    # torch and oneflow never share an environment here, so one known backend is always missing
    missing = [n for n in KNOWN_BACKENDS if n not in multilr.list_backends()]
    assert missing, "every known backend is installed; this test needs one that is not"
    name = missing[0]
    with pytest.raises(BackendNotFoundError, match=rf"backend '{name}' is not installed; install the package "
                                                   rf"'{KNOWN_BACKENDS[name]}'.*installed backends: "):
        get_backend(name)


def test_broken_plugins_are_reported(lists_backend):
    class NoEmit:
        name, convention = "half", "lr"

        def extract(self, model):
            return []

    register_backend("half", NoEmit)
    try:
        with pytest.raises(BackendError, match=r"backend half does not implement emit"):
            get_backend("half")
    finally:
        _registered.pop("half")

    def explode():
        raise RuntimeError("no GPU driver")

    register_backend("boom", explode)
    try:
        with pytest.raises(BackendError, match=r"backend 'boom' failed to start: no GPU driver"):
            get_backend("boom")
    finally:
        _registered.pop("boom")


def test_a_backend_instance_or_a_bad_name_is_refused_when_registered():
    with pytest.raises(BackendError, match=r"register_backend\('lists2', \.\.\.\): the factory must be callable .*"
                       r"got a ListBackend; pass its class, or lambda: instance"):
        register_backend("lists2", ListBackend())
    with pytest.raises(BackendError, match="the name must be a non-empty string, got ''"):
        register_backend("", ListBackend)
    assert "lists2" not in _registered and "" not in _registered


def test_bad_convention_is_refused():
    class Wrong(ListBackend):
        convention = "scaled"

    with pytest.raises(BackendError, match=r"convention must be 'lr' or 'lr_scale', got 'scaled'"):
        get_backend(Wrong())


def test_lr_scale_convention_never_prescales():
    infos = [ParamInfo(n, (1,), "float32", "", (), True, n) for n in "ab"]
    p = multilr.plan(infos, {"lr": 0.1, "rules": [{"glob": "b", "lr_mult": 0.5}, {"glob": "a", "frozen": True}]})
    for opts in multilr.group_options(p, "lr_scale"):
        assert opts["lr"] == 0.1, f"got lr {opts['lr']}, should be the base rate 0.1 [{opts['name']}]"
    assert [o["lr_scale"] for o in multilr.group_options(p, "lr_scale")] == [0.0, 0.5]
    for opts in multilr.group_options(p, "lr"):
        assert "lr_scale" not in opts, f"an 'lr' target must not get lr_scale [{opts['name']}]"
    with pytest.raises(ValueError, match=r"convention must be"):
        multilr.group_options(p, "both")  # type: ignore[arg-type]


@pytest.mark.parametrize("attach", ["attach_params", "attach_table"])
def test_lr_scale_groups_with_tensors_match_their_options(attach):
    # the groups a backend hands its optimizer are written apart from group_options:
    # a frozen group's lr_scale must be 0 there too, or nn.Graph trains it at its scale
    infos = [ParamInfo(n, (1,), "float32", "", (), True, n) for n in "ab"]
    spec = {"lr": 0.1, "rules": [{"glob": "b", "lr_mult": 0.5}, {"glob": "a", "frozen": True}]}
    if attach == "attach_table":
        table = ParamTable.from_infos(infos)
        table.tensors = ["A", "B"]
        p = resolve(table, as_spec(spec))
        assert _members_by_position(p, table) is not None, "the by-position path is the one under test"
        groups = attach_table(p, "lr_scale", table)
    else:
        p = multilr.plan(infos, spec)
        groups = attach_params(p, "lr_scale", {"a": "A", "b": "B"})
    assert [g["params"] for g in groups] == [["A"], ["B"]]
    assert [g["lr_scale"] for g in groups] == [0.0, 0.5], "the frozen group 'a' must get lr_scale 0"
    assert [{k: v for k, v in g.items() if k != "params"} for g in groups] == multilr.group_options(p, "lr_scale")


def test_backend_cannot_be_inferred_for_unknown_objects():
    with pytest.raises(BackendNotFoundError, match=r"cannot tell which backend reads a dict; pass backend="):
        build({"w": 1.0}, Spec(lr=1))


def _distribution(site, name, target):
    """An installed distribution registering backend ``lists`` at ``target``, as pip leaves one."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"  # as pip names the folder
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[multilr.backends]\nlists = {target}\n")


def test_two_packages_registering_one_name_are_refused(tmp_path, monkeypatch):
    _distribution(tmp_path, "lists-a", "test_registry:ListBackend")
    _distribution(tmp_path, "lists-b", "shadow:ListBackend")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackendError, match=r"backend 'lists' is registered by more than one installed package: "
                                           r"lists-a \(test_registry:ListBackend\), lists-b \(shadow:ListBackend\)"):
        get_backend("lists")
    assert "lists" not in multilr._registry._instances  # nothing loaded
