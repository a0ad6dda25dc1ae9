"""The in-memory snapshot that replay builds and reads are answered from.

Rows are mutable and private; what leaves this module are Optuna's ``FrozenTrial`` and
``FrozenStudy`` objects built from copies of a row, cached until the row changes
(copy-on-write: an object handed out is never touched again). Every index a read needs is
kept up to date by :func:`optuna_journal.replay.apply.apply`, so no read scans a study.
"""

from __future__ import annotations

from collections.abc import Container
import copy
from datetime import datetime
from typing import Any, cast

import msgspec
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from optuna_journal.records import StateCode


class TrialRow(msgspec.Struct, array_like=True, gc=False):
    """One trial as replay knows it; snapshots store rows as they are.

    A Struct without GC tracking: a large study holds one per trial, and none takes part in a
    reference cycle (a row names its study and distribution set by id, not by reference), so
    the cyclic GC need never walk them. Params are kept in Optuna's external representation;
    the state as a :class:`StateCode`, whose hashing and comparisons cost a fraction of
    ``TrialState``'s; datetimes as Optuna shows them, naive local time.
    """

    trial_id: int
    number: int
    study_id: int
    state: StateCode
    values: list[float] | None
    datetime_start: datetime | None
    datetime_complete: datetime | None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    dist_set: int = 0  # index into State.dist_sets: the distributions of `params`
    user_attrs: dict[str, Any] = msgspec.field(default_factory=dict)
    system_attrs: dict[str, Any] = msgspec.field(default_factory=dict)
    intermediate_values: dict[int, float] = msgspec.field(default_factory=dict)
    heartbeat: float | None = None  # POSIX time of the last heartbeat, if any

    def freeze(self, distributions: dict[str, BaseDistribution]) -> FrozenTrial:
        """A ``FrozenTrial`` that later changes to the row never reach.

        ``distributions`` is the row's set; only a finished trial's copy shares it.
        """
        if self.state in FINISHED:
            # A finished trial never changes again: its frozen copy may share the row's dicts.
            return _frozen_trial(
                self.number,
                TRIAL_STATES[self.state],
                self.values,
                self.datetime_start,
                self.datetime_complete,
                self.params,
                distributions,
                self.user_attrs,
                self.system_attrs,
                self.intermediate_values,
                self.trial_id,
            )
        # A running trial's copy is a copy: Optuna's Trial adds to its cached trial's dicts.
        return self.freeze_deep(distributions)

    def freeze_deep(self, distributions: dict[str, BaseDistribution]) -> FrozenTrial:
        """A ``FrozenTrial`` the caller may change freely, as ``copy.deepcopy`` would make it.

        ``distributions`` is the row's set, deep-copied for this call where the caller owns
        the result; each trial gets its own dict of them.
        """
        return _frozen_trial(
            self.number,
            TRIAL_STATES[self.state],
            None if self.values is None else list(self.values),
            self.datetime_start,
            self.datetime_complete,
            dict(self.params),
            dict(distributions),
            _copied_attrs(self.user_attrs),
            _copied_attrs(self.system_attrs),
            dict(self.intermediate_values),
            self.trial_id,
        )


_MIN_COLLECT = 4096
"""Fewer distribution sets than this are never collected: a study whose params keep their
distributions has one set per distinct sequence of params, and needs no collection."""

FINISHED = frozenset((StateCode.COMPLETE, StateCode.PRUNED, StateCode.FAIL))
TRIAL_STATES = [TrialState(code) for code in range(len(StateCode))]  # by StateCode


def _copied_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    # Decoded attrs are trees of immutable scalars, lists and dicts: only containers need copies.
    for value in attrs.values():
        if type(value) in (list, dict):
            return {
                k: copy.deepcopy(v) if type(v) in (list, dict) else v for k, v in attrs.items()
            }
    return attrs.copy()


_FIELDS = (
    "_number",
    "state",
    "_values",
    "_datetime_start",
    "datetime_complete",
    "_params",
    "_user_attrs",
    "_system_attrs",
    "intermediate_values",
    "_distributions",
    "_trial_id",
)
# FrozenTrial.__init__ only assigns these attributes, in this order; setting them directly is
# five times faster, which a cold open of a large study feels. Checked once, at import.
_FAST_OK = (
    tuple(FrozenTrial(0, TrialState.RUNNING, None, None, None, {}, {}, {}, {}, {}, 0).__dict__)
    == _FIELDS
)


def _frozen_trial(
    number: int,
    state: TrialState,
    values: list[float] | None,
    datetime_start: datetime | None,
    datetime_complete: datetime | None,
    params: dict[str, Any],
    distributions: dict[str, BaseDistribution],
    user_attrs: dict[str, Any],
    system_attrs: dict[str, Any],
    intermediate_values: dict[int, float],
    trial_id: int,
) -> FrozenTrial:
    if not _FAST_OK:
        return FrozenTrial(
            number=number,
            state=state,
            value=None,
            values=values,
            datetime_start=datetime_start,
            datetime_complete=datetime_complete,
            params=params,
            distributions=distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            intermediate_values=intermediate_values,
            trial_id=trial_id,
        )
    trial: FrozenTrial = object.__new__(FrozenTrial)
    # In the order of _FIELDS, which is __init__'s (checked above), so that every instance
    # shares its class's dict keys (CPython's split dicts): a third of the memory of a dict
    # of its own, and faster to build. Another order would still work, without the saving.
    trial._number = number
    trial.state = state
    trial._values = values
    trial._datetime_start = datetime_start
    trial.datetime_complete = datetime_complete
    trial._params = params
    trial._user_attrs = user_attrs
    trial._system_attrs = system_attrs
    trial.intermediate_values = intermediate_values
    trial._distributions = distributions
    trial._trial_id = trial_id
    return trial


class StudyRow:
    """One study: its attrs, its trials by number, and the indexes reads use."""

    __slots__ = (
        "study_id",
        "name",
        "directions",
        "user_attrs",
        "system_attrs",
        "trials",
        "frozen",
        "stale",
        "frozen_study",
        "counts",
        "best",
        "first_distribution",
        "param_steps",
    )

    def __init__(self, study_id: int, name: str, directions: list[StudyDirection]) -> None:
        self.study_id = study_id
        self.name = name
        self.directions = directions
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}
        self.trials: list[TrialRow] = []
        # frozen[n] is trials[n] as last handed out; a trial that changes puts its number in
        # `stale`, and is rebuilt before it is read again.
        self.frozen: list[FrozenTrial | None] = []
        self.stale: set[int] = set()
        self.frozen_study: FrozenStudy | None = None
        self.counts = [0] * len(StateCode)  # trials by state
        self.best: TrialRow | None = None  # single-objective studies only
        # The first distribution recorded for each param name: later ones must be compatible.
        self.first_distribution: dict[str, BaseDistribution] = {}
        # (distribution set, name, distribution key) -> what a compatible param record adds:
        # the interned name, the distribution and the set with it. Replay's cache, not state.
        self.param_steps: dict[tuple[int, str, object], tuple[str, BaseDistribution, int]] = {}

    def freeze(self) -> FrozenStudy:
        if self.frozen_study is None:
            self.frozen_study = FrozenStudy(
                study_name=self.name,
                direction=None,
                user_attrs=dict(self.user_attrs),
                system_attrs=dict(self.system_attrs),
                study_id=self.study_id,
                directions=list(self.directions),
            )
        return self.frozen_study


class State:
    """Everything a log's records say, as of ``position`` records.

    Attributes:
        position: How many records (header included) have been applied.
        studies: Studies by id; a deleted study is gone.
        study_ids: Study ids by name.
        trials: Trials by id, across studies.
        next_study_id: The id the next created study gets (ids are never reused).
        next_trial_id: Likewise for trials.
        last_rid: The last ``rid`` applied for each writer: a record at or below it is a repeat.
        dist_sets: Distinct sets of param distributions, each a dict that is never changed:
            trials with the same params share one, however many. Sets that no trial has any
            more are dropped now and then (see :meth:`collect_dist_sets`).
        beating: The running trials that have had a heartbeat, by id: where stale ones are
            looked for, without a scan of every trial.
    """

    __slots__ = (
        "position",
        "studies",
        "study_ids",
        "trials",
        "next_study_id",
        "next_trial_id",
        "last_rid",
        "dist_sets",
        "_dist_steps",
        "_collect_at",
        "beating",
    )

    def __init__(self) -> None:
        self.position = 0
        self.last_rid: dict[str, int] = {}
        self.studies: dict[int, StudyRow] = {}
        self.study_ids: dict[str, int] = {}
        self.trials: dict[int, TrialRow] = {}
        self.next_study_id = 0
        self.next_trial_id = 0
        self.dist_sets: list[dict[str, BaseDistribution]] = [{}]
        # (set, name, id of a distribution) -> the set with that param added or replaced.
        # Distributions in a set stay alive with it, and the steps are forgotten when sets are
        # dropped, so an id in a key is never another distribution's.
        self._dist_steps: dict[tuple[int, str, int], int] = {}
        self._collect_at = _MIN_COLLECT
        self.beating: dict[int, TrialRow] = {}

    def with_param(self, dist_set: int, name: str, dist: BaseDistribution) -> int:
        """The distribution set ``dist_set`` with ``name`` drawn from ``dist``."""
        key = (dist_set, name, id(dist))
        found = self._dist_steps.get(key)
        if found is None:
            found = len(self.dist_sets)
            self.dist_sets.append({**self.dist_sets[dist_set], name: dist})
            self._dist_steps[key] = found
        return found

    def collect_dist_sets(self) -> None:
        """Drop the distribution sets no trial is in, once there are twice as many as were
        kept the last time (and at least ``_MIN_COLLECT``): one pass over the trials per
        doubling.

        A trial passes through one set per param, and when its first param's distribution is
        its own (bounds that change from trial to trial), so are all its sets: n trials of k
        params would keep n * k sets, where Optuna's storages keep n. Call it before a set is
        made, with every row in ``trials``: the rows are renumbered, and the caches of steps
        between sets, which name sets by number, are emptied to be filled again.
        """
        if len(self.dist_sets) < self._collect_at:
            return
        kept = [self.dist_sets[0]]  # the empty set stays 0, every new row's
        renumbered = {0: 0}
        for row in self.trials.values():
            number = renumbered.get(row.dist_set)
            if number is None:
                number = renumbered[row.dist_set] = len(kept)
                kept.append(self.dist_sets[row.dist_set])
            row.dist_set = number
        self.dist_sets = kept
        self._dist_steps.clear()
        for study in self.studies.values():
            study.param_steps.clear()
        self._collect_at = max(2 * len(kept), _MIN_COLLECT)

    def study(self, study_id: int) -> StudyRow:
        try:
            return self.studies[study_id]
        except KeyError:
            raise KeyError(f"No study with study_id {study_id} exists.") from None

    def trial(self, trial_id: int) -> TrialRow:
        try:
            return self.trials[trial_id]
        except KeyError:
            raise KeyError(f"No trial with trial_id {trial_id} exists.") from None

    def distributions(self, row: TrialRow) -> dict[str, BaseDistribution]:
        """The distributions of a trial's params (shared: do not change it)."""
        return self.dist_sets[row.dist_set]

    def frozen_trial(self, trial_id: int) -> FrozenTrial:
        row = self.trial(trial_id)
        study = self.studies[row.study_id]
        if row.number in study.stale:
            study.frozen[row.number] = row.freeze(self.dist_sets[row.dist_set])
            study.stale.discard(row.number)
        return study.frozen[row.number]  # type: ignore[return-value]

    def frozen_trials(
        self, study_id: int, states: Container[TrialState] | None = None, deep: bool = False
    ) -> list[FrozenTrial]:
        """The study's trials; ``deep`` builds copies the caller may change freely."""
        study = self.study(study_id)
        if isinstance(states, (tuple, list, set, frozenset)) and not any(
            study.counts[s.value] for s in states
        ):
            return []  # Optuna asks for the WAITING trials before every trial: mostly none
        sets = self.dist_sets
        if deep:
            # Each distribution is copied once per call, as one copy.deepcopy of the list would.
            memo: dict[int, Any] = {}
            copies: dict[int, dict[str, BaseDistribution]] = {}
            out = []
            for t in study.trials:
                if states is not None and TRIAL_STATES[t.state] not in states:
                    continue
                dists = copies.get(t.dist_set)
                if dists is None:
                    dists = copies[t.dist_set] = copy.deepcopy(sets[t.dist_set], memo)
                out.append(t.freeze_deep(dists))
            return out
        frozen = cast("list[FrozenTrial]", study.frozen)  # no None is left once `stale` is empty
        if study.stale:
            trials = study.trials
            for number in study.stale:
                row = trials[number]
                frozen[number] = row.freeze(sets[row.dist_set])
            study.stale.clear()
        if states is None:
            return list(frozen)
        return [t for t in frozen if t.state in states]

    def n_trials(self, study_id: int, states: tuple[TrialState, ...] | None) -> int:
        study = self.study(study_id)
        if states is None:
            return len(study.trials)
        return sum(study.counts[s.value] for s in set(states))
