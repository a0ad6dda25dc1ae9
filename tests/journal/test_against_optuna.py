"""Random sequences of storage calls, made to ours and to one of Optuna's storages alike (its
``InMemoryStorage``, or its ``JournalStorage``): every answer and every error must match.
Two storages on one log take turns at the calls (as two processes would), each reading what
the other wrote; one that opens the log afresh at the end (from its snapshot and tail) must
show the same state. On a log in memory, in a file and in a Redis stream.

Against ``InMemoryStorage``, one known difference is left out of the draws: a trial created
from a template registers its parameters' distributions with ours (as with Optuna's
``RDBStorage`` and ``JournalStorage``, which check a new parameter against earlier trials'),
not with ``InMemoryStorage``, which checks only against parameters set one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
import json
import math
from pathlib import Path
import shutil
import tempfile
from typing import Any
import uuid

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages.journal import BaseJournalBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
import pytest

from optuna_journal import FileBackend, JournalStorage, MemoryBackend
from optuna_journal.backends.base import Backend
from optuna_journal.backends.redis import RedisBackend
from optuna_journal.redis_server import RedisServer
from tests.soak import SOAK, slow
from tests.strategies import json_values

# Each parameter name has a kind that templates always use; set_trial_param also draws
# variants of another kind (or other choices), which must be refused as incompatible.
_USUAL: dict[str, BaseDistribution] = {
    "x": FloatDistribution(-1.0, 1.0),
    "n": IntDistribution(0, 4),
    "c": CategoricalDistribution(("a", 1, None)),
}
_OTHER: dict[str, list[BaseDistribution]] = {
    "x": [
        FloatDistribution(-1.0, 3.0),
        FloatDistribution(0.1, 1.0, log=True),
        IntDistribution(0, 1),
    ],
    "n": [IntDistribution(-2, 8, step=2), IntDistribution(1, 4, log=True)],
    "c": [CategoricalDistribution(("a", 1, None)), CategoricalDistribution(("a", True))],
}
_STATES = list(TrialState)
finite = st.sampled_from([0.0, 1.0, math.inf, -math.inf]) | st.floats(-1e6, 1e6)  # ties too
names = st.sampled_from(["min", "max", "s0", "s1"])
keys = st.sampled_from(["k", "key", "ü"])


def _internal(dist: BaseDistribution) -> st.SearchStrategy[float]:
    if isinstance(dist, CategoricalDistribution):
        return st.integers(0, len(dist.choices) - 1).map(float)
    if isinstance(dist, IntDistribution):
        return st.integers(int(dist.low), int(dist.high)).map(float)
    assert isinstance(dist, FloatDistribution)
    return st.floats(dist.low, dist.high)


def _some(data: st.DataObject, ids: list[int], rare: list[int]) -> int:
    """One of ``ids``; now and then one of ``rare``, or one that was never made."""
    if not ids or data.draw(st.integers(0, 9)) == 0:
        return data.draw(st.sampled_from([*rare, 1000]))
    return data.draw(st.sampled_from(ids))


def _values(data: st.DataObject, state: TrialState, n_objectives: int) -> list[float] | None:
    """Objective values for a trial that ends in ``state``: COMPLETE has them, PRUNED may."""
    if state == TrialState.COMPLETE or (state == TrialState.PRUNED and data.draw(st.booleans())):
        return data.draw(st.lists(finite, min_size=n_objectives, max_size=n_objectives))
    return None


def _plain(value: Any) -> Any:
    """A form that compares by type and value, NaN equal to NaN."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_plain(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), _plain(v)) for k, v in value.items())))
    if isinstance(value, BaseDistribution):
        return repr(value)
    return (type(value).__name__, value)


def _trial(t: FrozenTrial) -> Any:
    """Everything of a trial but the moments each storage took from its own clock."""
    return _plain(
        [
            t._trial_id,
            t.number,
            t.state.name,
            t.values,
            t.params,
            t.distributions,
            t.user_attrs,
            t.system_attrs,
            t.intermediate_values,
            t.datetime_start is None,
            t.datetime_complete is None,
        ]
    )


def _best(t: FrozenTrial) -> Any:
    """Ties: Optuna's InMemoryStorage keeps the first trial to reach the best value, Optuna's
    scans (and ours) the lowest number. Both must hold the best value."""
    return _plain(t.values)


def _outcome(call: Callable[[], Any], view: Callable[[Any], Any] = _plain) -> Any:
    try:
        return ("ok", view(call()))
    except Exception as err:  # the kind must match; the wording is each storage's own
        return ("error", type(err).__name__)


class AgainstInMemory(RuleBasedStateMachine):
    # What the reference storage does its own way: InMemoryStorage's templates (see the
    # module's docstring) and ties; Optuna's JournalStorage's departures (see below).
    templates_register = False
    asserts_for_errors = False
    keeps_deleted = False
    best: Callable[[FrozenTrial], Any] = staticmethod(_best)

    def __init__(self) -> None:
        super().__init__()
        self.theirs = self.reference()
        self.ours = JournalStorage(self.backend(), snapshot_every=13)
        self.other = JournalStorage(self.backend())
        self.behind = False  # whether ``ours`` has yet to read the other's writes
        self.study_ids: list[int] = []  # live studies, by Optuna's ids
        self.trial_ids: dict[int, list[int]] = {}  # the trials of each live study
        self.gone_studies: list[int] = []
        self.gone_trials: list[int] = []  # the trials of deleted studies
        # Study ids are opaque: Optuna's InMemoryStorage spends one on a duplicate name,
        # Optuna's JournalStorage (and ours) do not. Theirs -> ours.
        self.to_ours: dict[int, int] = {}
        # Per study, each parameter name: whether it first appeared in a template trial.
        self.first_in_template: dict[int, dict[str, bool]] = {}

    def each(
        self,
        call: Callable[[Any, int], Any],
        study_id: int = -1,
        view: Callable[[Any], Any] = _plain,
    ) -> tuple[Any, Any]:
        """Make one call to each storage, each with its own id for ``study_id`` (an id that
        was never made goes as it is); return their outcomes, theirs first."""
        theirs = _outcome(lambda: call(self.theirs, study_id), view)
        ours = _outcome(lambda: call(self.ours, self.to_ours.get(study_id, study_id)), view)
        self.behind = False
        return theirs, ours

    def both(
        self,
        call: Callable[[Any, int], Any],
        study_id: int = -1,
        view: Callable[[Any], Any] = _plain,
    ) -> Any:
        """:meth:`each`, whose two outcomes must be the same; return it."""
        theirs, ours = self.each(call, study_id, view)
        if theirs == ("error", "AssertionError") and self.asserts_for_errors:
            assert ours[0] == "error"
        else:
            assert ours == theirs
        return ours

    def reference(self) -> optuna.storages.BaseStorage:
        return optuna.storages.InMemoryStorage()

    def backend(self) -> Backend:
        """A handle on the log: another process's, where that can be had."""
        if not hasattr(self, "memory"):
            self.memory = MemoryBackend()
        return self.memory

    def from_ours(self, study_id: int) -> int:
        return next((t for t, o in self.to_ours.items() if o == study_id), -1)

    def some_study(self, data: st.DataObject) -> int:
        return _some(data, self.study_ids, [] if self.keeps_deleted else self.gone_studies)

    def some_trial(self, data: st.DataObject, to_write: bool = False) -> int:
        """A trial; to write to, mostly one that is not finished."""
        ids = [t for ts in self.trial_ids.values() for t in ts]
        gone = [] if self.keeps_deleted else self.gone_trials
        if not to_write:
            return _some(data, ids, gone)
        finished = [t for t in ids if self.theirs.get_trial(t).state.is_finished()]
        return _some(data, [t for t in ids if t not in finished], gone + finished)

    def has_trials(self) -> bool:
        return any(self.trial_ids.values())

    @rule()
    def switch_storages(self) -> None:
        """The other storage on the log makes the calls from now on; its first call finds
        what was written since its last (a write's read-back brings the other's records)."""
        self.ours, self.other = self.other, self.ours
        self.behind = True

    # Studies.

    @initialize()
    def create_two_studies(self) -> None:
        self.create_study("min", [StudyDirection.MINIMIZE])
        self.create_study("max", [StudyDirection.MAXIMIZE])

    @rule(name=names, n_objectives=st.integers(1, 2), data=st.data())
    def create_any_study(self, name: str, n_objectives: int, data: st.DataObject) -> None:
        direction = st.sampled_from([StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE])
        self.create_study(
            name, data.draw(st.lists(direction, min_size=n_objectives, max_size=n_objectives))
        )

    def create_study(self, name: str, directions: list[StudyDirection]) -> None:
        (kind, study_id), (our_kind, ours) = self.each(
            lambda s, _: s.create_new_study(directions, name), view=lambda v: v
        )
        assert our_kind == kind
        if kind == "ok":
            self.to_ours[study_id] = ours
            self.study_ids.append(study_id)
            self.trial_ids[study_id] = []
            self.first_in_template[study_id] = {}

    @precondition(lambda self: len(self.study_ids) > 1)  # rarer than the rules that build
    @rule(data=st.data())
    def delete_study(self, data: st.DataObject) -> None:
        study_id = self.some_study(data)
        kind, _ = self.both(lambda s, i: s.delete_study(i), study_id)
        if kind == "ok":
            self.study_ids.remove(study_id)
            self.gone_studies.append(study_id)
            self.gone_trials += self.trial_ids.pop(study_id)

    @precondition(lambda self: self.study_ids)
    @rule(data=st.data(), key=keys, value=json_values, system=st.booleans())
    def set_study_attr(self, data: st.DataObject, key: str, value: Any, system: bool) -> None:
        study_id = self.some_study(data)
        if system:
            self.both(lambda s, i: s.set_study_system_attr(i, key, value), study_id)
        else:
            self.both(lambda s, i: s.set_study_user_attr(i, key, value), study_id)

    @precondition(lambda self: self.study_ids)
    @rule(name=names, data=st.data())
    def read_study(self, name: str, data: st.DataObject) -> None:
        study_id = self.some_study(data)
        theirs, ours = self.each(lambda s, _: s.get_study_id_from_name(name), view=lambda v: v)
        assert ours == (theirs if theirs[0] == "error" else ("ok", self.to_ours[theirs[1]]))
        self.both(lambda s, i: s.get_study_name_from_id(i), study_id)
        self.both(lambda s, i: s.get_study_directions(i), study_id)
        self.both(lambda s, i: s.get_study_user_attrs(i), study_id)
        self.both(lambda s, i: s.get_study_system_attrs(i), study_id)

    # Trials.

    @precondition(lambda self: self.study_ids)
    @rule(data=st.data())
    def create_trial(self, data: st.DataObject) -> None:
        self.new_trial(self.some_study(data))

    @precondition(lambda self: self.study_ids)
    @rule(
        data=st.data(),
        state=st.sampled_from(_STATES),
        params=st.lists(st.sampled_from(sorted(_USUAL)), unique=True),
        user_attrs=st.dictionaries(keys, json_values, max_size=2),
        system_attrs=st.dictionaries(keys, json_values, max_size=2),
        intermediate=st.dictionaries(st.integers(0, 5), st.floats(), max_size=3),
    )
    def create_trial_from_template(
        self,
        data: st.DataObject,
        state: TrialState,
        params: list[str],
        user_attrs: dict[str, Any],
        system_attrs: dict[str, Any],
        intermediate: dict[int, float],
    ) -> None:
        study_id = self.some_study(data)
        values = _values(data, state, self.objectives(study_id))
        start = None if state == TrialState.WAITING else datetime(2026, 1, 2, 3, 4, 5, 678901)
        template = FrozenTrial(
            number=0,
            trial_id=0,
            state=state,
            value=None,
            values=values,
            datetime_start=start,
            datetime_complete=datetime(2026, 1, 2, 3, 5, 6, 7) if state.is_finished() else None,
            params={
                name: _USUAL[name].to_external_repr(data.draw(_internal(_USUAL[name])))
                for name in params
            },
            distributions={name: _USUAL[name] for name in params},
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            intermediate_values=intermediate,
        )
        kind, trial_id = self.new_trial(study_id, template)
        if kind == "ok":
            for name in params:
                self.first_in_template[study_id].setdefault(name, True)
            created = [s.get_trial(trial_id) for s in (self.theirs, self.ours)]
            assert created[0].datetime_start == created[1].datetime_start
            assert created[0].datetime_complete == created[1].datetime_complete

    def new_trial(self, study_id: int, template: FrozenTrial | None = None) -> Any:
        outcome = self.both(lambda s, i: s.create_new_trial(i, template), study_id, lambda v: v)
        if outcome[0] == "ok":
            self.trial_ids[study_id].append(outcome[1])
        return outcome

    @precondition(lambda self: self.has_trials())
    @rule(data=st.data(), name=st.sampled_from(sorted(_USUAL)), usual=st.booleans())
    def set_param(self, data: st.DataObject, name: str, usual: bool) -> None:
        trial_id = self.some_trial(data, to_write=True)
        dist = _USUAL[name] if usual else data.draw(st.sampled_from(_OTHER[name]))
        study_id = self.study_of(trial_id)
        if not usual and study_id is not None and not self.templates_register:
            assume(not self.first_in_template[study_id].get(name))  # the known difference
        kind, _ = self.param(trial_id, name, data.draw(_internal(dist)), dist)
        if kind == "ok" and study_id is not None:
            self.first_in_template[study_id].setdefault(name, False)

    def param(self, trial_id: int, name: str, internal: float, dist: BaseDistribution) -> Any:
        return self.both(lambda s, _: s.set_trial_param(trial_id, name, internal, dist))

    def objectives(self, study_id: int) -> int:
        try:
            return len(self.theirs.get_study_directions(study_id))
        except KeyError:
            return 1

    def study_of(self, trial_id: int) -> int | None:
        return next((s for s, ts in self.trial_ids.items() if trial_id in ts), None)

    @precondition(lambda self: self.study_ids)
    @rule(data=st.data(), end=st.sampled_from([TrialState.COMPLETE] * 3 + _STATES))
    def run_trial(self, data: st.DataObject, end: TrialState) -> None:
        """What ``study.optimize`` does: a trial, its parameters, a report, its end."""
        kind, trial_id = self.new_trial(self.some_study(data))
        if kind == "ok":
            for name in data.draw(st.lists(st.sampled_from(sorted(_USUAL)), unique=True)):
                self.param(trial_id, name, data.draw(_internal(_USUAL[name])), _USUAL[name])
            value = data.draw(finite)
            self.both(lambda s, _: s.set_trial_intermediate_value(trial_id, 0, value))
            self.end(data, trial_id, end)

    @precondition(lambda self: self.has_trials())
    @rule(data=st.data(), state=st.sampled_from(_STATES))
    def set_state(self, data: st.DataObject, state: TrialState) -> None:
        self.end(data, self.some_trial(data, to_write=True), state)

    def end(self, data: st.DataObject, trial_id: int, state: TrialState) -> None:
        study_id = self.study_of(trial_id)
        values = _values(data, state, 1 if study_id is None else self.objectives(study_id))
        self.both(lambda s, _: s.set_trial_state_values(trial_id, state, values))

    @precondition(lambda self: self.has_trials())
    @rule(data=st.data(), step=st.integers(0, 5), value=st.floats())
    def report(self, data: st.DataObject, step: int, value: float) -> None:
        trial_id = self.some_trial(data, to_write=True)
        self.both(lambda s, _: s.set_trial_intermediate_value(trial_id, step, value))

    @precondition(lambda self: self.has_trials())
    @rule(data=st.data(), key=keys, value=json_values, system=st.booleans())
    def set_trial_attr(self, data: st.DataObject, key: str, value: Any, system: bool) -> None:
        trial_id = self.some_trial(data, to_write=True)
        if system:
            self.both(lambda s, _: s.set_trial_system_attr(trial_id, key, value))
        else:
            self.both(lambda s, _: s.set_trial_user_attr(trial_id, key, value))

    @precondition(lambda self: self.has_trials())
    @rule(data=st.data(), name=st.sampled_from(sorted(_USUAL)), number=st.integers(0, 4))
    def read_trial(self, data: st.DataObject, name: str, number: int) -> None:
        trial_id = self.some_trial(data)
        study_id = self.some_study(data)
        self.both(lambda s, _: s.get_trial(trial_id), view=_trial)
        self.both(lambda s, _: s.get_trial_number_from_id(trial_id))
        # A float, as BaseStorage says (InMemoryStorage returns a categorical's index as an int).
        self.both(lambda s, _: s.get_trial_param(trial_id, name), view=float)
        self.both(lambda s, i: s.get_trial_id_from_study_id_trial_number(i, number), study_id)

    @precondition(lambda self: self.study_ids)
    @rule(data=st.data(), states=st.none() | st.lists(st.sampled_from(_STATES)))
    def count_and_best(self, data: st.DataObject, states: list[TrialState] | None) -> None:
        # States go as lists: given exactly (WAITING,), Optuna's InMemoryStorage looks for
        # WAITING trials only after the last one it found, and misses a trial that went
        # back from RUNNING to WAITING.
        study_id = self.some_study(data)
        self.both(lambda s, i: s.get_n_trials(i, states), study_id)
        if states and states[0] != TrialState.WAITING:
            self.both(lambda s, i: s.get_n_trials(i, states[0]), study_id)
        self.both(
            lambda s, i: s.get_all_trials(i, deepcopy=False, states=states),
            study_id,
            lambda ts: [_trial(t) for t in ts],
        )
        self.both(lambda s, i: s.get_best_trial(i), study_id, self.best)

    # The whole state, after every step.

    @invariant()
    def same_studies_and_trials(self) -> None:
        if not self.behind:  # the other catches up with its first call when its turn comes
            self.compare(self.ours)

    def compare(self, ours: JournalStorage) -> None:
        def studies(storage: Any, ids: Callable[[int], int]) -> Any:
            return [
                _plain(
                    [
                        ids(s._study_id),
                        s.study_name,
                        [d.name for d in s.directions],
                        s.user_attrs,
                        s.system_attrs,
                    ]
                )
                for s in storage.get_all_studies()
            ]

        assert studies(ours, self.from_ours) == studies(self.theirs, lambda i: i)
        for study in self.theirs.get_all_studies():
            pair = ((ours, self.to_ours[study._study_id]), (self.theirs, study._study_id))
            trials = [[_trial(t) for t in s.get_all_trials(i)] for s, i in pair]
            assert trials[0] == trials[1]
            for state in _STATES:  # as a list: see count_and_best
                counts = [s.get_n_trials(i, [state]) for s, i in pair]
                assert counts[0] == counts[1], (study.study_name, state, counts)
            best = [_outcome(partial(s.get_best_trial, i), self.best) for s, i in pair]
            assert best[0] == best[1]

    def teardown(self) -> None:
        """A process that opens the log now (from a snapshot, if one was taken, and the
        tail) sees what the writer saw."""
        self.compare(JournalStorage(self.backend()))


class AgainstInMemoryOnFile(AgainstInMemory):
    def backend(self) -> Backend:
        if not hasattr(self, "directory"):
            self.directory = Path(tempfile.mkdtemp(prefix="against-inmemory-"))
        return FileBackend(self.directory / "s.journal")

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            shutil.rmtree(self.directory)


class AgainstInMemoryOnRedis(AgainstInMemory):
    server: RedisServer  # set by the fixture below

    def backend(self) -> Backend:
        if not hasattr(self, "name"):
            self.name = uuid.uuid4().hex
        return RedisBackend(self.server.url, self.name)


@pytest.fixture
def _redis(redis_server: RedisServer) -> None:
    AgainstInMemoryOnRedis.server = redis_server


class _OptunaJournalInMemory(BaseJournalBackend):
    """Optuna's journal as JSON lines in a list, as its file backend writes them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return [json.loads(line) for line in self.lines[log_number_from:]]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.lines += [json.dumps(log) for log in logs]


class AgainstOptunaJournal(AgainstInMemory):
    """Against Optuna's own ``JournalStorage``, whose semantics ours follows also where
    ``InMemoryStorage`` differs: the best trial on a tie, template trials' distributions."""

    templates_register = True
    # Where it differs from BaseStorage's documented behaviour, the draws or the checks allow
    # for it: it asserts where a KeyError is documented (a state set on a trial id never
    # made), and keeps the trials of a deleted study, found by their ids or the study's.
    asserts_for_errors = True
    keeps_deleted = True
    best = staticmethod(_trial)

    def reference(self) -> optuna.storages.BaseStorage:
        return optuna.storages.JournalStorage(_OptunaJournalInMemory())


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples * 10 if SOAK else examples,
        stateful_step_count=80 if SOAK else 50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


AgainstInMemory.TestCase.settings = _settings(100)
AgainstInMemoryOnFile.TestCase.settings = _settings(30)
AgainstInMemoryOnRedis.TestCase.settings = _settings(30)
AgainstOptunaJournal.TestCase.settings = _settings(100)
test_storage_against_optunas_inmemory = slow(AgainstInMemory.TestCase)
test_file_storage_against_optunas_inmemory = slow(AgainstInMemoryOnFile.TestCase)
test_redis_storage_against_optunas_inmemory = pytest.mark.usefixtures("_redis")(
    slow(AgainstInMemoryOnRedis.TestCase)
)
test_storage_against_optunas_journal = slow(AgainstOptunaJournal.TestCase)
