"""``optuna-journal report``: what the HTML holds, as of now and of a past record or moment,
for awkward studies; and the report opened in a real browser."""

from __future__ import annotations

from datetime import datetime
from html.parser import HTMLParser
import math
from pathlib import Path
import subprocess
import sys
import time

import optuna
import pytest

from optuna_journal import FileBackend, JournalStorage, report
from optuna_journal.cli import main
from tests import browser


class _Page(HTMLParser):
    """Per study section: its name, ``data-trials``, the rows of its trials table, its plot
    divs and its no-plot reasons."""

    def __init__(self) -> None:
        super().__init__()
        self.studies: dict[str, dict[str, list]] = {}
        self._current: dict[str, list] | None = None
        self._tag: list[str] = []
        self._in_trials = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "study":
            self._current = {"count": [int(a["data-trials"] or 0)], "trials": [], "plots": []}
            self._current["reasons"] = []
            self._current["name"] = []
        elif self._current is None:
            pass
        elif tag == "table" and a.get("class") == "trials":
            self._in_trials = True
        elif tag == "tr" and self._in_trials:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "div" and a.get("id", "") and "-plot-" in (a["id"] or ""):
            self._current["plots"].append(a["id"])
        self._tag.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self._tag.pop()
        if self._current is None:
            return
        if tag == "section":
            self.studies["".join(self._current.pop("name"))] = self._current
            self._current = None
        elif tag == "table":
            self._in_trials = False
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row:
            self._current["trials"].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._current is None:
            return
        if self._cell is not None:
            self._cell.append(data)
        elif self._tag[-1] == "h2":
            self._current["name"].append(data)
        elif self._tag[-1] == "p" and data.startswith("No plot:"):
            self._current["reasons"].append(data)


def _read(path: Path) -> dict[str, dict[str, list]]:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page.studies


def _rows(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[int, str]]:
    return [(t.number, t.state.name) for t in trials]


def _listed(section: dict[str, list]) -> list[tuple[int, str]]:
    return [(int(row[0]), row[1]) for row in section["trials"]]


def _storage(tmp_path: Path) -> JournalStorage:
    return JournalStorage(FileBackend(tmp_path / "s.journal"))


def test_report_at_a_record_lists_exactly_the_trials_that_existed_then(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="past")
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=6)
    running = study.ask()
    running.suggest_float("x", -1, 1)
    point = storage.position
    study.tell(running, 0.5)
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=4)

    then = tmp_path / "then.html"
    assert report.write(storage, str(then), at=str(point)) == [("past", 7)]
    past = storage.at(position=point).get_all_trials(0)
    section = _read(then)["past"]
    assert _listed(section) == _rows(past)
    assert _listed(section)[-1] == (6, "RUNNING")
    assert section["count"] == [7]

    now = tmp_path / "now.html"
    assert report.write(storage, str(now)) == [("past", 11)]
    assert _listed(_read(now)["past"]) == _rows(storage.get_all_trials(0))


def test_report_at_a_moment_lists_the_trials_written_before_it(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="past")
    study.optimize(lambda t: t.suggest_float("x", -1, 1), n_trials=3)
    time.sleep(0.05)
    moment = datetime.now().astimezone()
    time.sleep(0.05)
    study.optimize(lambda t: t.suggest_float("x", -1, 1), n_trials=2)

    out = tmp_path / "r.html"
    report.write(storage, str(out), at=moment.isoformat())
    expected = storage.at(time=moment).get_all_trials(0)
    assert len(expected) == 3
    assert _listed(_read(out)["past"]) == _rows(expected)


def test_report_of_nan_inf_and_failed_trials_renders(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="odd")
    for i, value in enumerate([1.0, math.inf, -math.inf, 2.0]):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.report(math.nan, 0)
        trial.report(math.inf, 1)
        trial.report(float(i), 2)
        study.tell(trial, value)
    failed = study.ask()
    failed.suggest_float("x", 0, 1)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.tell(study.ask(), math.nan)  # a NaN value fails the trial, as Optuna does

    out = tmp_path / "r.html"
    report.write(storage, str(out))
    section = _read(out)["odd"]
    assert [row[2] for row in section["trials"][:4]] == ["1", "inf", "-inf", "2"]
    assert [row[1] for row in section["trials"][4:]] == ["FAIL", "FAIL"]
    plots = section["plots"]
    assert "study-0-plot-0" in plots  # optimization history
    assert "study-0-plot-1" in plots  # intermediate values


def test_report_escapes_what_users_named(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    name = "<b>x</b></script><script>alert(1)</script>"
    study = optuna.create_study(storage=storage, study_name=name)
    study.set_user_attr("<i>k</i>", "</td><td>v")
    study.optimize(lambda t: t.suggest_categorical("<p>", ["</table>", "a"]) == "a", n_trials=3)
    out = tmp_path / "r.html"
    report.write(storage, str(out))
    text = out.read_text(encoding="utf-8")
    assert "<b>x</b>" not in text and "alert(1)</script>" not in text
    assert "</td><td>v" not in text
    assert _read(out)[name]["count"] == [3]


@pytest.mark.parametrize("objectives", [2, 3])
def test_report_of_a_multi_objective_study_draws_its_pareto_front(
    tmp_path: Path, objectives: int
) -> None:
    storage = _storage(tmp_path)
    study = optuna.create_study(storage=storage, directions=["minimize"] * objectives)
    study.set_metric_names([f"loss{i}" for i in range(objectives)])
    study.optimize(
        lambda t: tuple(t.suggest_float(f"x{i}", 0, 1) for i in range(objectives)),
        n_trials=12,
    )
    out = tmp_path / "r.html"
    report.write(storage, str(out))
    text = out.read_text(encoding="utf-8")
    (section,) = _read(out).values()
    assert len(section["trials"]) == 12
    assert "On the Pareto front" in text
    assert "loss1" in text
    # History, parallel coordinate and slice per objective, importances, the Pareto front
    # (plot n is the intermediate values', which this study has none of).
    assert len(section["plots"]) == 3 * objectives + 2
    assert section["plots"][-1] == f"study-0-plot-{3 * objectives + 2}"
    assert "Pareto front" in text
    assert not any("Pareto" in reason for reason in section["reasons"])


def test_report_of_four_objectives_says_why_there_is_no_pareto_plot(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = optuna.create_study(storage=storage, directions=["minimize"] * 4)
    study.optimize(lambda t: tuple(t.suggest_float(f"x{i}", 0, 1) for i in range(4)), n_trials=5)
    out = tmp_path / "r.html"
    report.write(storage, str(out))
    (section,) = _read(out).values()
    assert "No plot: a plot takes 2 or 3 objectives; this study has 4." in section["reasons"]


def test_report_of_an_empty_study_and_of_an_empty_journal(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    out = tmp_path / "r.html"
    assert report.write(storage, str(out)) == []
    assert "(no studies)" in out.read_text(encoding="utf-8")
    optuna.create_study(storage=storage, study_name="empty")
    assert report.write(storage, str(out)) == [("empty", 0)]
    section = _read(out)["empty"]
    assert section["trials"] == [] and section["plots"] == []
    assert "No plot: no trial has completed yet." in section["reasons"]


def test_report_of_one_study_and_of_an_unknown_one(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    for name in ("a", "b"):
        optuna.create_study(storage=storage, study_name=name).optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=2
        )
    out = tmp_path / "r.html"
    assert report.write(storage, str(out), study="b") == [("b", 2)]
    assert list(_read(out)) == ["b"]
    with pytest.raises(KeyError, match="No study named 'c'"):
        report.write(storage, str(out), study="c")
    with pytest.raises(KeyError, match="as of 1"):
        report.write(storage, str(out), study="a", at="1")


def test_cli_report_prints_what_it_wrote_and_refuses_a_bad_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = _storage(tmp_path)
    optuna.create_study(storage=storage, study_name="s").optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=3
    )
    out = tmp_path / "r.html"
    journal = str(tmp_path / "s.journal")
    assert main(["report", journal, "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: s (3 trials)\n"
    assert main(["report", journal, "--at", "yesterday", "-o", str(out)]) == 1
    assert "--at takes a record number or an ISO 8601 time" in capsys.readouterr().err
    assert main(["report", journal, "--study", "t", "-o", str(out)]) == 1
    assert "No study named 't'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "module", "extra"),
    [("report", "plotly", "report"), ("dashboard", "optuna_dashboard", "dashboard")],
)
def test_cli_without_the_extra_says_how_to_install_it(
    tmp_path: Path, command: str, module: str, extra: str
) -> None:
    journal = tmp_path / "s.journal"
    optuna.create_study(storage=JournalStorage(FileBackend(journal)), study_name="s")
    option = ["-o", str(tmp_path / "r.html")] if command == "report" else ["--port", "0"]
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from optuna_journal.cli import main\n"
        f"sys.exit(main({[command, str(journal), *option]!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done
    assert f"pip install 'optuna-journal[{extra}]'" in done.stderr
    assert done.stderr.startswith(f"optuna-journal {command}: error: ")


def test_report_opens_from_disk_in_a_real_browser(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = optuna.create_study(storage=storage, study_name="seen-in-chromium")
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=20)
    out = tmp_path / "report.html"
    report.write(storage, str(out))
    with browser.chromium(tmp_path / "profile") as session:
        session.get(out.as_uri())
        browser.wait_for_text(session, "seen-in-chromium")
        browser.wait_for_plot(session, "study-0-plot-0")
        browser.wait_for_plot(session, "study-0-writers")
        session.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
