"""Optuna distributions to record Structs and back.

Optuna's deprecated distribution classes (``UniformDistribution`` and friends) are stored as
the modern class they subclass; every other field is kept exactly.
"""

from __future__ import annotations

from typing import Any
import warnings

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from optuna_journal.records import AnyDistribution, CategoricalDist, FloatDist, IntDist


def to_record(dist: BaseDistribution) -> AnyDistribution:
    """Describe an Optuna distribution as a record field.

    Raises:
        TypeError: A distribution class Optuna does not define.
    """
    if isinstance(dist, FloatDistribution):
        return FloatDist(float(dist.low), float(dist.high), bool(dist.log), dist.step)
    if isinstance(dist, IntDistribution):
        return IntDist(int(dist.low), int(dist.high), bool(dist.log), int(dist.step))
    if isinstance(dist, CategoricalDistribution):
        return CategoricalDist(tuple(dist.choices))
    raise TypeError(f"cannot store a distribution of type {type(dist).__name__}")


def _build(dist: AnyDistribution) -> BaseDistribution:
    if isinstance(dist, FloatDist):
        if dist.step is None:
            return FloatDistribution(dist.low, dist.high, log=dist.log)
        # A record holds ``high`` as Optuna's constructor left it, fitted to the step grid in
        # decimal; fitting it again can move it (low=-0.05225887829293718, high=0.4477...,
        # step=0.5 becomes high=low). Rebuild the same distribution, without a second fit.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            built = FloatDistribution(dist.low, dist.high, log=dist.log, step=dist.step)
        built.high = dist.high
        return built
    if isinstance(dist, IntDist):
        return IntDistribution(dist.low, dist.high, log=dist.log, step=dist.step)
    return CategoricalDistribution(dist.choices)


_cache: dict[object, BaseDistribution] = {}


def distribution_key(dist: AnyDistribution) -> object:
    """A key equal for two records only if they describe the same distribution."""
    # Types are part of it: (1,), (1.0,) and (True,) are equal tuples but other choices.
    return (dist, *map(type, dist.choices)) if type(dist) is CategoricalDist else dist


def from_record(dist: AnyDistribution) -> BaseDistribution:
    """Rebuild the Optuna distribution; equal records share one (never mutated) object."""
    key = distribution_key(dist)
    built = _cache.get(key)
    if built is None:
        built = _build(dist)
        if len(_cache) < 4096:
            _cache[key] = built
    return built


def internal_value(dist: BaseDistribution, external: Any) -> float:
    """Optuna's internal representation of ``external``, exact for categorical choices that
    are equal as values but not as types (``1``, ``1.0`` and ``True`` are three choices)."""
    if isinstance(dist, CategoricalDistribution):
        for index, choice in enumerate(dist.choices):
            if type(choice) is type(external) and (
                choice == external or (choice != choice and external != external)
            ):
                return float(index)
    return float(dist.to_internal_repr(external))
