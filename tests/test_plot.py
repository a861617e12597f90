"""Rate plots (real matplotlib, Agg) and the terminal view; no framework needed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import multilr
from multilr import FinderResult, MissingDependencyError, RateHistory, SpecError, plot_rates, terminal_view
from multilr._finder import suggest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
C0, C1, C3 = (31, 119, 180), (255, 127, 14), (214, 39, 40)  # matplotlib's default colours 0, 1 and 3


def _history(n_groups: int = 2, steps: int = 20) -> RateHistory:
    names = [f"g{i}" for i in range(n_groups)]
    rates = {g: tuple(1e-3 * 2**i * (1 - t / (2 * steps)) for t in range(steps)) for i, g in enumerate(names)}
    return RateHistory(tuple(names), tuple(range(steps)), rates, {"schedule": "Linear(test)"})


def _pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"got {data[:8]!r}, should start with the PNG signature"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, f"got image shape {img.shape}"
    return (img[..., :3] * 255).round().astype(int)


def _count(img: np.ndarray, colour: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(img - np.array(colour)).max(axis=-1) <= tol).sum())


def test_plot_rates_writes_a_png_with_one_line_per_group(tmp_path: Path) -> None:
    out = plot_rates(_history(), tmp_path / "sub" / "rates.png")
    assert out == tmp_path / "sub" / "rates.png" and out.stat().st_size > 1000
    img = _pixels(out)
    for colour in (C0, C1):
        assert _count(img, colour) > 100, f"got too few pixels of colour {colour}: the line should be drawn"


def test_plot_rates_frozen_groups_linear_axis_and_a_single_step(tmp_path: Path) -> None:
    zero = RateHistory(("frozen",), (0, 1), {"frozen": (0.0, 0.0)})
    _pixels(plot_rates(zero, tmp_path / "zero.png"))  # log axis falls back to linear: nothing positive
    one = RateHistory(("a", "b"), (5,), {"a": (0.1,), "b": (0.0,)})
    _pixels(plot_rates(one, tmp_path / "one.png", log=False, title="one step"))


def test_plot_rates_many_groups_colour_by_peak_rate(tmp_path: Path) -> None:
    img = _pixels(plot_rates(_history(n_groups=30), tmp_path / "many.png"))
    # viridis, not the ten-colour cycle: its dark end (68, 1, 84) and bright end (253, 231, 37)
    assert _count(img, (68, 1, 84), tol=20) > 50 and _count(img, (253, 231, 37), tol=20) > 50


def test_plotting_leaves_pyplot_alone_and_import_multilr_loads_no_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys, multilr\n"
        "before = 'matplotlib' in sys.modules\n"
        "h = multilr.RateHistory(('a',), (0, 1), {'a': (0.1, 0.2)})\n"
        f"multilr.plot_rates(h, {str(tmp_path / 'x.png')!r})\n"
        "print(before, 'matplotlib.pyplot' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"], f"got {proc.stdout!r}, should be 'False False'"


def test_missing_matplotlib_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\nsys.modules['matplotlib'] = None\nimport multilr\n"
        "h = multilr.RateHistory(('a',), (0,), {'a': (0.1,)})\n"
        f"try:\n    multilr.plot_rates(h, {str(tmp_path / 'x.png')!r})\n"
        "except multilr.MissingDependencyError as exc:\n"
        "    print(isinstance(exc, ImportError), isinstance(exc, multilr.MultiLRError), exc)\n"
        "print(multilr.terminal_view(h).splitlines()[-1])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.splitlines()
    assert first.startswith("True True plotting needs matplotlib") and "pip install 'multilr[plot]'" in first
    assert last.startswith("a "), "the terminal view should work without matplotlib"
    assert issubclass(MissingDependencyError, ImportError)


def test_unwritable_path_is_a_multilr_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(multilr.MultiLRError, match="cannot write plot"):
        plot_rates(_history(), blocker / "rates.png")


# -- finder plot -----------------------------------------------------------------------


def _finder_result() -> FinderResult:
    lrs = [10 ** (k / 10 - 6) for k in range(60)]
    losses = [2.0 - 1.5 / (1 + math.exp(-(k - 30) / 4)) + (0 if k < 52 else 0.4 * (k - 52) ** 2) for k in range(60)]
    rates = RateHistory.from_rows(["body", "head"], [(i, (lr / 10, lr)) for i, lr in enumerate(lrs)])
    return FinderResult(
        lrs=tuple(lrs), losses=tuple(losses), smoothed=tuple(losses), rates=rates,
        ratios={"body": 0.1, "head": 1.0}, suggestions=suggest(lrs, losses, skip_start=6),
        stop="diverged", num_it=100,
    )


def test_finder_plot_marks_the_suggestion(tmp_path: Path) -> None:
    result = _finder_result()
    assert result.suggestion is not None and 1e-4 < result.suggestion < 1e-2, result.suggestions
    img = _pixels(result.plot(tmp_path / "finder.png"))
    assert _count(img, C0) > 100, "the smoothed loss should be drawn"
    assert _count(img, C3) > 100, "the suggestion should be marked (red line)"
    summary = result.summary(ascii=True)
    assert "suggested base lr" in summary and "body" in summary and all(ord(c) < 128 for c in summary)
    assert json.loads(json.dumps(result.to_dict()))["suggestion"] == result.suggestion


# -- terminal view ---------------------------------------------------------------------


def test_terminal_view_one_line_per_group_with_start_min_max_end() -> None:
    h = RateHistory(("stem", "body", "head"), (0, 1, 2, 3),
                    {"stem": (0.0,) * 4, "body": (0.1, 0.2, 0.05, 0.01), "head": (1.0, 2.0, 0.5, 0.1)})
    lines = terminal_view(h, width=10).splitlines()
    assert lines[0].startswith("rates of 3 groups over steps 0..3 (4 steps)") and "log scale 0.01..2" in lines[0]
    rows = {ln.split()[0]: ln.split() for ln in lines[3:]}
    assert rows["body"][1:5] == ["0.1", "0.01", "0.2", "0.01"]
    assert rows["head"][1:5] == ["1", "0.1", "2", "0.1"] and rows["head"][5] == "▇█▆▄"
    assert "(rate 0 throughout)" in lines[3]


def test_terminal_view_width_ascii_and_truncation() -> None:
    h = _history(n_groups=8, steps=200)
    text = terminal_view(h, width=25, max_groups=3, ascii=True)
    lines = text.splitlines()
    assert all(ord(c) < 128 for c in text), "ascii=True should print only ASCII"
    assert [len(ln.split()[-1]) for ln in lines[3:6]] == [25, 25, 25]
    assert lines[-1] == "... 5 more groups"
    assert "linear scale" in terminal_view(h, log=False)


@pytest.mark.parametrize("bad", [{"width": 0}, {"max_groups": -1}, {"width": 2.5}])
def test_terminal_view_refuses_bad_sizes(bad: dict[str, float]) -> None:
    with pytest.raises(SpecError, match=next(iter(bad))):
        terminal_view(_history(), **bad)  # type: ignore[arg-type]
