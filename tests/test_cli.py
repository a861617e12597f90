"""The `multilr` command line: plot, plan, lr-find; clean one-line errors with exit status 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import multilr
from multilr import RateHistory, planned_rates, terminal_view
from multilr.cli import main, progress
from multilr.schedules import Step

ROOT = Path(__file__).resolve().parents[1]
MLP = f"{ROOT / 'examples' / 'models.py'}:mlp"
SPEC = '{"lr": 0.01, "rules": [{"prefix": "layer2", "lr_mult": 10, "name": "head"}]}'
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def history(tmp_path: Path) -> Path:
    h = RateHistory(("body", "head"), (0, 1, 2), {"body": (0.1, 0.05, 0.0), "head": (1.0, 0.5, 0.1)})
    return h.save(tmp_path / "rates.json")


def test_plot_a_history_file(history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rates.png"
    assert main(["plot", str(history), "-o", str(out), "--terminal", "--ascii"]) == 0
    assert out.read_bytes()[:8] == PNG
    text = capsys.readouterr().out
    assert text.splitlines()[0] == f"wrote {out}"
    assert text.endswith(terminal_view(RateHistory.load(history), ascii=True) + "\n")


def test_plot_the_planned_rates_of_a_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "planned.png"
    sched = '{"kind": "step", "step_size": 2, "gamma": 0.5}'
    argv = ["plot", "--spec", SPEC, "--model", MLP, "--schedule", sched, "--steps", "6", "-o", str(out), "--terminal"]
    assert main(argv) == 0
    assert out.read_bytes()[:8] == PNG
    import models  # examples/models.py, on pytest's pythonpath

    want = planned_rates(multilr.plan(models.mlp(), json.loads(SPEC)), 6, Step(2, 0.5))
    assert want.rates["head"] == pytest.approx((0.1, 0.1, 0.05, 0.05, 0.025, 0.025))
    assert capsys.readouterr().out.endswith(terminal_view(want) + "\n")


def test_spec_and_schedule_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text("lr: 1.0e-3\nrules:\n  - {prefix: layer2, lr_mult: 10, name: head}\n")
    yaml_sched = tmp_path / "sched.yaml"
    yaml_sched.write_text("kind: cosine\ntotal: 10\n")
    json_sched = tmp_path / "sched.json"
    json_sched.write_text('{"kind": "cosine", "total": 10}')
    outputs = []
    for sched in (yaml_sched, json_sched):
        assert main(["plot", "--spec", str(spec), "--model", MLP, "--schedule", str(sched), "--steps", "10"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and "head" in outputs[0] and "0.01" in outputs[0]


def test_plan_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--spec", SPEC, "--model", MLP]) == 0
    text = capsys.readouterr().out
    assert text.startswith("multilr plan: base lr 0.01, 4 tensors, 2 groups") and "layer2.weight" in text
    assert main(["plan", "--spec", SPEC, "--model", MLP, "--summary"]) == 0
    assert "layer2.weight" not in capsys.readouterr().out


JOB = '''
import torch, multilr

def job():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    groups = multilr.build(model, {"lr": 1e-3, "rules": [{"prefix": "2", "lr_mult": 10, "name": "head"}]})
    opt = torch.optim.SGD(groups)
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step, groups

def not_a_job():
    return 5
'''


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(JOB))
    return path


def test_lr_find_on_a_job_file(job_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, js = tmp_path / "finder.png", tmp_path / "finder.json"
    argv = ["lr-find", f"{job_file}:job", "--num-it", "40", "-o", str(png), "--json", str(js), "--terminal"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith("lr finder: ") and "suggested base lr: " in text and "head" in text
    assert png.read_bytes()[:8] == PNG
    data = json.loads(js.read_text())
    assert data["num_it"] == 40 and data["ratios"] == {"default": 1.0, "head": 10.0}
    assert f"{data['suggestion']:.3g}" in text


def test_lr_find_on_the_digits_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lr-find", str(ROOT / "examples" / "digits_finetune.py") + ":finder_job", "--num-it", "20"]) == 0
    text = capsys.readouterr().out
    assert "lr finder: " in text and "depth4" in text and "stem/depth0/frozen" in text


# (argv, exit status, message): 2 the command line is wrong, 1 multilr refused what it read
ERRORS = [
    pytest.param(["plot"], 2, "give a HISTORY file", id="plot-nothing"),
    pytest.param(["plot", "nowhere.json"], 2, "cannot read rate history", id="plot-missing-file"),
    pytest.param(["plot", "--spec", SPEC, "--model", MLP], 2, "--steps is required", id="plot-no-steps"),
    pytest.param(["plot", "--spec", SPEC, "--model", MLP, "--steps", "3", "--schedule", '{"kind": "cosin"}'],
                 1, "did you mean 'cosine'", id="schedule-unknown-kind"),
    pytest.param(["plot", "--spec", SPEC, "--model", MLP, "--steps", "3", "--schedule", "{nope"],
                 1, "not valid JSON", id="schedule-bad-json"),
    pytest.param(["plot", "--spec", '{"lr": -1}', "--model", MLP, "--steps", "3"], 1, "lr", id="spec-bad-lr"),
    pytest.param(["plan", "--spec", SPEC, "--model", "models.py"], 2, "expected MODULE_OR_FILE:NAME", id="no-colon"),
    pytest.param(["plan", "--spec", SPEC, "--model", "nowhere/models.py:mlp"], 2, "no such file", id="no-file"),
    pytest.param(["plan", "--spec", SPEC, "--model", "no_such_module_xyz:f"], 2, "cannot import", id="no-module"),
    pytest.param(["plan", "--spec", SPEC, "--model", f"{MLP}x"], 2, "has no 'mlpx'; its callables: ", id="no-attr"),
    pytest.param(["plan", "--spec", SPEC], 2, "SPEC and MODEL are both required", id="plan-no-model"),
    pytest.param(["explain", "nowhere.yaml", MLP], 2, "no such spec file 'nowhere.yaml'", id="no-spec-file"),
    pytest.param(["explain", SPEC, "models:resnet18", "--model", MLP], 2, "give MODEL once", id="model-twice"),
    pytest.param(["explain", SPEC, "models:ResNet18.forward"], 2, "needs arguments (self, x", id="factory-args"),
    pytest.param(["explain", '{"lr": 0.1, "rulez": []}', MLP], 1, "did you mean 'rules'", id="spec-typo"),
    pytest.param(["explain", '{"lr": 0.1, "rulez": [], "no_decy": []}', MLP], 1,
                 "unknown keys 'rulez' (did you mean 'rules'?), 'no_decy' (did you mean 'no_decay'?)", id="spec-two-typos"),
]


@pytest.mark.parametrize(("argv", "status", "message"), ERRORS)
def test_bad_input_exits_with_one_line(
    argv: list[str], status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith(f"multilr {argv[0]}: error: ") and message in err, f"got {err!r}"
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_values_are_argparse_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", "--spec", SPEC, "--model", MLP, "--steps", "0"]) == 2
    assert "argument --steps: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["demo", "--lr", "-1"]) == 2
    assert "argument --lr: expected a finite number > 0" in capsys.readouterr().err
    assert main(["explain", SPEC, MLP, "--json", "--summary-only"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_lr_find_refusals(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lr-find", f"{job_file}:not_a_job"]) == 2
    assert "must return a multilr.FinderJob" in capsys.readouterr().err
    assert main(["lr-find", f"{job_file}:job", "--start-lr", "0"]) == 2
    assert "argument --start-lr: expected a finite number > 0, got 0" in capsys.readouterr().err
    assert main(["lr-find", f"{job_file}:job", "--num-it", "1"]) == 1  # the finder's own check: refused
    assert "multilr lr-find: error: num_it must be an integer >= 2" in capsys.readouterr().err


def test_usage_errors_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nonsense"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "lr-find" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"multilr {multilr.__version__}"


def test_python_dash_m_and_the_installed_script(history: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "multilr", "plot", str(history), "--ascii"],
                        capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("rates of 2 groups"), ok.stderr
    bad = subprocess.run([sys.executable, "-m", "multilr", "plot", str(history) + ".missing"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr  # a file that is not there: usage
    assert bad.stderr.startswith("multilr plot: error: cannot read rate history")
    script = Path(sys.executable).with_name("multilr")  # [project.scripts], installed by scripts/env_*.sh
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120, check=False)
    assert version.stdout.strip() == f"multilr {multilr.__version__}", version.stderr


# -- explain ---------------------------------------------------------------------------

NET = '''
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.head = torch.nn.Linear(8, 2)

def build():
    torch.manual_seed(0)
    return Net()

INSTANCE = build()

def needs_width(width):
    return Net()
'''

HEAD_SPEC = {"lr": 0.01, "weight_decay": 0.1, "no_decay": ["bias", "norm"],
             "rules": [{"prefix": "head", "lr_mult": 10, "name": "head"}]}


@pytest.fixture
def net_file(tmp_path: Path) -> Path:
    path = tmp_path / "mynet.py"
    path.write_text(textwrap.dedent(NET))
    return path


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(HEAD_SPEC))
    return path


def _net_plan(net_file: Path, spec: dict[str, object] | None = None) -> multilr.Plan:
    import importlib.util

    mod_spec = importlib.util.spec_from_file_location("_mynet_reference", net_file)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return multilr.plan(module.build(), spec or HEAD_SPEC)


@pytest.mark.parametrize("name", ["build", "Net", "INSTANCE"], ids=["factory", "class", "model-object"])
def test_explain_a_model_from_a_file(
    name: str, net_file: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", str(spec_file), f"{net_file}:{name}"]) == 0
    out, err = capsys.readouterr()
    want = _net_plan(net_file)
    assert out == want.table(rich=False) + "\n", f"got {out!r}"
    # the table and the group summary, with the rule that decided each rate
    assert "head.weight" in out and "head (lr_mult=10)" in out and "\ngroups\n" in out
    assert "\x1b[" not in out  # stdout is not a terminal here: no colour codes in CI logs
    assert err == "\nok: 6 tensors in 4 groups (0 tensors in 0 frozen groups)\n"


def test_explain_a_module_path_with_a_yaml_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text("lr: 1.0e-3\nrules:\n  - {name: head, prefix: fc, lr_mult: 10}\n"
                    "  - {name: stem, regex: '^(conv1|bn1)\\.', frozen: true}\n")
    assert main(["explain", str(spec), "models:resnet18", "--summary-only"]) == 0
    out, err = capsys.readouterr()
    # conv1.weight alone, and bn1's weight and bias: one group of 3 tensors
    assert err == "\nok: 62 tensors in 3 groups (3 tensors in 1 frozen group)\n"
    import models  # examples/models.py, on pytest's pythonpath

    want = multilr.plan(models.resnet18(), multilr.Spec.from_file(spec))
    assert out == want.summary(rich=False) + "\n"
    assert out.startswith("multilr plan: base lr 0.001, 62 tensors, 3 groups") and "stem/frozen" in out


def test_explain_json_is_the_plan(net_file: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(spec_file), f"{net_file}:build", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data == _net_plan(net_file).to_dict() and err == ""
    assert [g["name"] for g in data["groups"]] == ["default", "no_decay", "head", "head/no_decay"]


COVERAGE = [
    pytest.param({"lr": 0.1, "rules": [{"prefix": "haed", "lr_mult": 10}]}, [],
                 "rule 'prefix:haed' matches no parameter (names look like 'body.weight'", id="rule-matches-nothing"),
    pytest.param({"lr": 0.1, "unmatched": "error", "rules": [{"prefix": "head", "lr_mult": 10, "name": "head"}]}, [],
                 "4 parameter(s) match no rule and unmatched='error': 'body.weight', 'body.bias', 'norm.weight', "
                 "'norm.bias'; rules: head", id="unmatched-error"),
    pytest.param(HEAD_SPEC, ["--strict"], "4 parameter(s) match no rule and unmatched='error'", id="strict"),
    pytest.param({"lr": 0.1, "rules": [{"prefix": "head", "lr_mult": 10, "name": "a"},
                                       {"glob": "head.*", "lr_mult": 2, "name": "b"}]}, [],
                 "parameter 'head.weight': rules 'a' (lr_mult=10) and 'b' (lr_mult=2) both set its rate",
                 id="conflict"),
]


@pytest.mark.parametrize(("spec", "flags", "message"), COVERAGE)
def test_explain_exits_1_when_the_spec_does_not_fit(
    spec: dict[str, object], flags: list[str], message: str, net_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    assert main(["explain", str(path), f"{net_file}:build", *flags]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("multilr explain: error: ") and message in err, f"got {err!r}"
    assert err.count("\n") == 1


def test_strict_passes_when_every_parameter_is_reached(
    net_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the refusal above is --strict's doing: the same spec without it, or covering everything, passes
    spec = {**HEAD_SPEC, "rules": [*HEAD_SPEC["rules"], {"regex": "^(body|norm)\\.", "lr_mult": 1, "name": "body"}]}
    path = tmp_path / "full.json"
    path.write_text(json.dumps(spec))
    assert main(["explain", str(path), f"{net_file}:build", "--strict", "--summary"]) == 0
    assert main(["explain", json.dumps(HEAD_SPEC), f"{net_file}:build", "--summary"]) == 0
    assert "head/no_decay" in capsys.readouterr().out


def test_a_factory_with_arguments_is_a_usage_error(net_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", SPEC, f"{net_file}:needs_width"]) == 2
    assert "needs arguments (width); name a factory that takes none" in capsys.readouterr().err


def test_the_console_script_finds_modules_in_the_current_folder(net_file: Path, spec_file: Path) -> None:
    # `multilr` runs from its bin folder; `mynet:build` must still import from where it was run
    script = Path(sys.executable).with_name("multilr")
    done = subprocess.run([str(script), "explain", str(spec_file), "mynet:build", "--summary-only"],
                          cwd=net_file.parent, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == _net_plan(net_file).summary(rich=False) + "\n"


# -- help ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["explain", "plan", "plot", "lr-find", "demo"])
def test_every_command_shows_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    shown = "explain" if command == "plan" else command
    examples = out[out.index("\nexamples:\n"):]
    assert f"\n  multilr {shown} " in examples, f"got {out!r}"


def test_explain_help_documents_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--help"]) == 0
    out = capsys.readouterr().out
    assert "exit status: 0 the spec fits the model; 1 it does not" in out
    assert "  multilr explain spec.yaml examples/models.py:resnet18" in out


# -- progress --------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    report = progress(stream=stream, interval=0)
    assert type(report).__name__ == "LineProgress"
    with report.task("sweep", total=3) as advance:
        for _ in range(3):
            advance(1)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines[:2]] == ["sweep: 1/3 (33%)", "sweep: 2/3 (66%)"], lines
    assert lines[2].startswith("sweep: 3/3 done in ") and len(lines) == 3


def test_progress_is_silent_for_short_tasks_and_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    for report in (progress(stream=io.StringIO()), progress(quiet=True, stream=io.StringIO())):
        with report.task("short", total=2) as advance:
            advance(2)
        assert report.stream.getvalue() == ""  # type: ignore[attr-defined]
    progress(quiet=True).log("epoch 1")
    progress(stream=io.StringIO()).log("epoch 2")
    assert capsys.readouterr().out == "epoch 2\n"  # commentary goes to stdout unless quiet


def test_progress_bar_on_a_terminal() -> None:
    pytest.importorskip("rich")
    stream = _Terminal()
    report = progress(stream=stream)
    assert type(report).__name__ == "RichProgress"
    with report.task("fine-tune", total=4) as advance:
        advance(4)
    assert "fine-tune" in stream.getvalue()


def test_lr_find_reports_progress_unless_quiet(job_file: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import multilr.cli._progress as progress_module

    monkeypatch.setattr(progress_module, "INTERVAL", 0.0)  # a line per step, as if each took 10 s
    assert main(["lr-find", f"{job_file}:job", "--num-it", "10"]) == 0
    err = capsys.readouterr().err
    assert "lr-find: 1/10 (10%)" in err and "lr-find: 10/10 done in" in err, err
    assert main(["lr-find", f"{job_file}:job", "--num-it", "10", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


# -- demo without its packages -----------------------------------------------------------


@pytest.mark.parametrize("blocked", ["torch", "sklearn"])
def test_demo_without_torch_or_sklearn_names_the_install(blocked: str) -> None:
    # a None entry in sys.modules makes `import torch` fail as if it were not installed
    code = f"import sys; sys.modules[{blocked!r}] = None; from multilr.cli import main; sys.exit(main(['demo']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("multilr demo: error: the demo needs PyTorch and scikit-learn (")
    assert blocked in done.stderr and done.stderr.endswith(": pip install multilr-torch scikit-learn\n")
