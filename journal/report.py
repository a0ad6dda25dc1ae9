"""``optuna-journal report``: one HTML file that shows a journal's studies, as of now or of
any record or moment, and opens from disk with no network (plotly's JS is inlined)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
import html
import math
from typing import Any
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_journal import log
from optuna_journal.artifacts import Artifact, artifacts
from optuna_journal.records import JournalHeader, StudyCreated
from optuna_journal.replay import State, apply
from optuna_journal.storage import JournalStorage

_MAX_ROWS = 2000
"""Trials listed per study: a table of 100,000 rows helps nobody (``optuna-journal trials``
lists them all)."""

Plot = Callable[[], Any]

MISSING = (
    "optuna-journal report needs plotly, which is not installed: "
    "pip install 'optuna-journal[report]'"
)


@dataclass
class Writer:
    """What one writer (``host:pid:nonce:thread``) wrote about a study."""

    records: int = 0
    first: datetime | None = None
    last: datetime | None = None
    ops: Counter[str] = field(default_factory=Counter)


def parse_at(text: str) -> dict[str, Any]:
    """``--at``: a record number, or an ISO 8601 time (naive means local time).

    Raises:
        ValueError: It is neither.
    """
    if text.isdigit():
        return {"position": int(text)}
    try:
        return {"time": datetime.fromisoformat(text)}
    except ValueError:
        raise ValueError(
            f"--at takes a record number or an ISO 8601 time such as 2026-12-06T15:30:00, "
            f"got {text!r}"
        ) from None


def write(
    storage: JournalStorage, output: str, study: str | None = None, at: str | None = None
) -> list[tuple[str, int]]:
    """Write the report of ``storage`` (``study`` only, if given; as of ``at``, see
    :func:`parse_at`) to ``output``; return each study's name and trial count.

    Raises:
        KeyError: No study is named ``study`` (at that point).
        ImportError: plotly is not installed.
    """
    try:
        import plotly.offline
    except ImportError as err:
        raise ImportError(MISSING) from err

    view = storage if at is None else storage.at(**parse_at(at))
    studies = view.get_all_studies()
    if study is not None:
        studies = [s for s in studies if s.study_name == study]
        if not studies:
            when = "" if at is None else f" as of {at}"
            raise KeyError(f"No study named {study!r} in {storage.backend.location}{when}.")
    trials = {s._study_id: view.get_all_trials(s._study_id, deepcopy=False) for s in studies}
    writers = _writers(view, trials)
    attached = artifacts(storage.backend, view.position)
    sections = []
    for frozen in studies:
        loaded = optuna.load_study(study_name=frozen.study_name, storage=view)
        sid = frozen._study_id
        sections.append(
            _section(
                loaded,
                trials[sid],
                writers.get(sid, {}),
                [a for a in attached if a.study == frozen.study_name],
            )
        )
    when = f"record {view.position}" + (" (the end of the log)" if at is None else f" ({at})")
    page = _PAGE.format(
        title=html.escape(f"optuna-journal report: {storage.backend.location}"),
        plotly=plotly.offline.get_plotlyjs(),
        location=html.escape(storage.backend.location),
        when=html.escape(when),
        made=datetime.now().astimezone().isoformat(timespec="seconds"),
        contents="".join(
            f'<li><a href="#study-{s._study_id}">{html.escape(s.study_name)}</a></li>'
            for s in studies
        )
        or "<li>(no studies)</li>",
        sections="\n".join(sections),
    )
    with open(output, "w", encoding="utf-8") as out:
        out.write(page)
    return [(s.study_name, len(trials[s._study_id])) for s in studies]


def _writers(
    view: JournalStorage, trials: dict[int, list[FrozenTrial]]
) -> dict[int, dict[str, Writer]]:
    """Per study, the writers of its records (its own and its trials') up to ``view``'s
    position, from one pass over the log."""
    study_of = {t._trial_id: sid for sid, ts in trials.items() for t in ts}
    found: dict[int, dict[str, Writer]] = {sid: {} for sid in trials}
    state = State()  # for the ids the log's StudyCreated records were given
    for number, record in log.records(view.backend):
        if number >= view.position:
            break
        if isinstance(record, JournalHeader):
            state.position += 1
            continue
        verdict = apply(state, record)
        sid = verdict if isinstance(record, StudyCreated) else getattr(record, "study_id", None)
        if sid is None:
            sid = study_of.get(getattr(record, "trial_id", -1))
        if sid not in found:
            continue
        writer = found[sid].setdefault(record.writer, Writer())
        writer.records += 1
        writer.ops[type(record).__struct_config__.tag] += 1  # type: ignore[index]
        writer.first = record.at if writer.first is None else writer.first
        writer.last = record.at
    return found


def _section(
    study: optuna.Study,
    trials: list[FrozenTrial],
    writers: dict[str, Writer],
    attached: list[Artifact],
) -> str:
    sid = study._study_id
    plots = "".join(
        _plot(f"study-{sid}-plot-{i}", title, plot)
        for i, (title, plot) in enumerate(_plots(study))
    )
    return _SECTION.format(
        id=sid,
        name=html.escape(study.study_name),
        trials=len(trials),
        summary=_summary(study, trials),
        plots=plots,
        writers=_writer_table(writers),
        timeline=_plot(f"study-{sid}-writers", "Writers over time", lambda: _timeline(writers))
        if writers
        else "",
        artifacts=_artifact_table(attached),
        table=_trial_table(trials),
    )


def _summary(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    names = _objectives(study)
    states = Counter(t.state for t in trials)
    rows = [
        (
            "Directions",
            ", ".join(
                f"{n}: {d.name.lower()}" for n, d in zip(names, study.directions, strict=True)
            ),
        ),
        ("Trials", f"{len(trials)}"),
        (
            "Trials per state",
            ", ".join(f"{s.name} {states[s]}" for s in TrialState if states[s]) or "none",
        ),
    ]
    best = _best(study)
    if not best:
        rows.append(("Best trial", "none: no trial has completed"))
    for t in best[:10]:
        label = "Best trial" if len(study.directions) == 1 else "On the Pareto front"
        rows.append((label, f"#{t.number}: {_values(names, t.values)}"))
        rows.append(("  its params", _params(t.params)))
    if len(best) > 10:
        rows.append(("On the Pareto front", f"and {len(best) - 10} more trials"))
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    if starts and ends:
        first, last = min(starts), max(ends)
        rows.append(
            ("Duration", f"{_duration((last - first).total_seconds())} ({first} to {last})")
        )
    for key, value in study.user_attrs.items():
        rows.append((f"user attr {key}", _text(value)))
    return _table(("", ""), [(html.escape(k), html.escape(v)) for k, v in rows], head=False)


def _best(study: optuna.Study) -> list[FrozenTrial]:
    try:
        return study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:  # no complete trial
        return []


def _objectives(study: optuna.Study) -> list[str]:
    """The objectives' names: the study's metric names, else ``Objective`` (``Objective 0``,
    ``Objective 1``... for several)."""
    if study.metric_names is not None:
        return list(study.metric_names)
    if len(study.directions) == 1:
        return ["Objective"]
    return [f"Objective {i}" for i in range(len(study.directions))]


def _plots(study: optuna.Study) -> Iterable[tuple[str, Plot | str]]:
    """Optuna's plots that apply to ``study``: each a title and a function that makes the
    figure, or why there is none."""
    from optuna import visualization as vis

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    names = _objectives(study)
    # Per objective: the plot's title suffix and its keyword arguments.
    targets: list[tuple[str, dict[str, Any]]] = (
        [("", {"target_name": names[0]})]
        if len(names) == 1
        else [(f": {n}", {"target": _objective(i), "target_name": n}) for i, n in enumerate(names)]
    )
    none = "no trial has completed yet" if not complete else None
    for of, kwargs in targets:
        yield (
            f"Optimization history{of}",
            none or partial(vis.plot_optimization_history, study, **kwargs),
        )
    if not any(t.intermediate_values for t in trials):
        yield "Intermediate values", "no trial has reported intermediate values"
    else:
        yield "Intermediate values", partial(vis.plot_intermediate_values, study)
    params = none or (None if any(t.params for t in complete) else "no trial has params")
    for of, kwargs in targets:
        yield (
            f"Parallel coordinate{of}",
            params or partial(vis.plot_parallel_coordinate, study, **kwargs),
        )
        yield f"Slice{of}", params or partial(vis.plot_slice, study, **kwargs)
    if params is None and len(complete) < 2:
        params = "it takes at least two complete trials"
    importances: dict[str, Any] = {"target_name": names[0]} if len(names) == 1 else {}
    yield (
        "Parameter importances",
        params or partial(vis.plot_param_importances, study, **importances),
    )
    if len(names) > 3:
        yield "Pareto front", f"a plot takes 2 or 3 objectives; this study has {len(names)}"
    elif len(names) > 1:
        yield "Pareto front", none or partial(vis.plot_pareto_front, study, target_names=names)


def _objective(i: int) -> Callable[[FrozenTrial], float]:
    """The ``target`` of a plot of a multi-objective study's ``i``-th objective."""
    return lambda trial: trial.values[i]


def _plot(div: str, title: str, plot: Plot | str) -> str:
    """A figure as a ``<div>`` drawn by the inlined plotly, or why there is none."""
    if isinstance(plot, str):
        return _NO_PLOT.format(title=html.escape(title), why=html.escape(plot))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            figure = plot()
    except (ValueError, RuntimeError, ZeroDivisionError) as err:  # e.g. zero variance
        return _NO_PLOT.format(
            title=html.escape(title), why=html.escape(f"not computable here: {err}")
        )
    figure.update_layout(title=title)
    body = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=div, config={"displaylogo": False}
    )
    return f'<figure class="plot">{body}</figure>'


def _timeline(writers: dict[str, Writer]) -> Any:
    """Each writer's span, first to last record, its record count at both ends."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, w in sorted(writers.items(), key=lambda kv: (kv[1].first, kv[0])):
        figure.add_trace(
            go.Scatter(
                x=[w.first, w.last],
                y=[name, name],
                mode="lines+markers",
                line={"width": 8},
                name=name,
                hovertext=f"{name}: {w.records} records",
                hoverinfo="text+x",
            )
        )
    figure.update_layout(
        showlegend=False, xaxis_title="time (UTC)", height=120 + 30 * len(writers)
    )
    return figure


def _writer_table(writers: dict[str, Writer]) -> str:
    rows = [
        (
            html.escape(name),
            f"{w.records}",
            html.escape(f"{w.first}"),
            html.escape(f"{w.last}"),
            html.escape(", ".join(f"{op} {n}" for op, n in w.ops.most_common())),
        )
        for name, w in sorted(writers.items(), key=lambda kv: -kv[1].records)
    ]
    return _table(("writer (host:pid:nonce:thread)", "records", "first", "last", "what"), rows)


def _artifact_table(attached: list[Artifact]) -> str:
    if not attached:
        return ""
    rows = [
        (
            html.escape(a.artifact_id),
            "study" if a.trial is None else f"trial #{a.trial}",
            html.escape(a.filename),
            html.escape(a.mimetype),
            "-" if a.size is None else f"{a.size:,}",
            html.escape(a.sha256 or "-"),
        )
        for a in attached
    ]
    table = _table(("id", "of", "file", "MIME type", "bytes", "SHA-256"), rows)
    return f"<h3>Artifacts</h3>{table}"


def _trial_table(trials: list[FrozenTrial]) -> str:
    shown = trials[-_MAX_ROWS:]
    rows = [
        (
            f"{t.number}",
            t.state.name,
            html.escape(", ".join(_number(v) for v in t.values or [])),
            html.escape(_params(t.params)),
            "-" if t.duration is None else html.escape(_duration(t.duration.total_seconds())),
        )
        for t in shown
    ]
    note = (
        f"<p>The last {_MAX_ROWS} of {len(trials)} trials; "
        "<code>optuna-journal trials</code> lists every one.</p>"
        if len(trials) > len(shown)
        else ""
    )
    table = _table(("number", "state", "values", "params", "duration"), rows, css="trials")
    return f"{note}{table}"


def _table(
    columns: tuple[str, ...], rows: Sequence[tuple[str, ...]], head: bool = True, css: str = ""
) -> str:
    """An HTML table of cells already escaped."""
    thead = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}">{thead if head else ""}{body}</table>'


def _values(names: list[str], values: list[float] | None) -> str:
    return ", ".join(f"{n} {_number(v)}" for n, v in zip(names, values or [], strict=True))


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in params.items()) or "-"


def _number(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def _text(value: Any) -> str:
    return _number(value) if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{int(hours)} h {int(minutes)} min {seconds:.0f} s"
        if hours
        else (f"{int(minutes)} min {seconds:.0f} s")
    )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.2em 0.8em; text-align: left;
          vertical-align: top; }}
th {{ background: #f4f4f4; }}
table.trials td:first-child {{ text-align: right; }}
section.study {{ border-top: 3px solid #446; margin-top: 2em; }}
figure.plot {{ margin: 0 0 1em; }}
p.no-plot {{ color: #666; }}
</style>
<script type="text/javascript">{plotly}</script>
</head>
<body>
<h1>optuna-journal report</h1>
<p>Journal <code>{location}</code>, as of {when}. Made {made}.</p>
<ul>{contents}</ul>
{sections}
</body>
</html>
"""

_SECTION = """<section class="study" id="study-{id}" data-trials="{trials}">
<h2>{name}</h2>
{summary}
{plots}
<h3>Writers</h3>
{writers}
{timeline}
{artifacts}
<details><summary>Trials</summary>
{table}
</details>
</section>"""

_NO_PLOT = '<h3>{title}</h3><p class="no-plot">No plot: {why}.</p>'
