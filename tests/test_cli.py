"""The `multilr` command line: plot, plan, lr-find; clean one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import multilr
from multilr import RateHistory, planned_rates, terminal_view
from multilr.cli import main
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


ERRORS = [
    pytest.param(["plot"], "give a HISTORY file", id="plot-nothing"),
    pytest.param(["plot", "nowhere.json"], "cannot read rate history", id="plot-missing-file"),
    pytest.param(["plot", "--spec", SPEC, "--model", MLP], "--steps is required", id="plot-no-steps"),
    pytest.param(["plot", "--spec", SPEC, "--model", MLP, "--steps", "0"], "steps", id="plot-zero-steps"),
    pytest.param(["plot", "--spec", SPEC, "--model", MLP, "--steps", "3", "--schedule", '{"kind": "cosin"}'],
                 "did you mean 'cosine'", id="schedule-unknown-kind"),
    pytest.param(["plot", "--spec", SPEC, "--model", MLP, "--steps", "3", "--schedule", "{nope"],
                 "not valid JSON", id="schedule-bad-json"),
    pytest.param(["plot", "--spec", '{"lr": -1}', "--model", MLP, "--steps", "3"], "lr", id="spec-bad-lr"),
    pytest.param(["plan", "--spec", SPEC, "--model", "models.py"], "expected MODULE_OR_FILE:CALLABLE", id="no-colon"),
    pytest.param(["plan", "--spec", SPEC, "--model", "nowhere/models.py:mlp"], "no such file", id="no-file"),
    pytest.param(["plan", "--spec", SPEC, "--model", "no_such_module_xyz:f"], "cannot import", id="no-module"),
    pytest.param(["plan", "--spec", SPEC, "--model", f"{MLP}x"], "has no 'mlpx'; its callables: ", id="no-attr"),
    pytest.param(["plan", "--spec", SPEC], "--spec and --model are both required", id="plan-no-model"),
]


@pytest.mark.parametrize(("argv", "message"), ERRORS)
def test_bad_input_exits_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"multilr {argv[0]}: error: ") and message in err, f"got {err!r}"
    assert err.count("\n") == 1 and "Traceback" not in err


def test_lr_find_refusals(job_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lr-find", f"{job_file}:not_a_job"]) == 2
    assert "must return a multilr.FinderJob" in capsys.readouterr().err
    assert main(["lr-find", f"{job_file}:job", "--start-lr", "0"]) == 2
    assert "start_lr must be > 0" in capsys.readouterr().err


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
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("multilr plot: error: cannot read rate history")
    script = Path(sys.executable).with_name("multilr")  # [project.scripts], installed by scripts/env_*.sh
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120, check=False)
    assert version.stdout.strip() == f"multilr {multilr.__version__}", version.stderr
