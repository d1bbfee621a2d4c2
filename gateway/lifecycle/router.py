"""Traffic policies and the routing table the request path reads.

A deployment's `TrafficPolicy` says which versions get what share of its traffic (w / Σw),
whether a routing key pins a caller to a version, which versions get shadow copies and which
take over when the chosen one fails. The control path compiles every deployment's policy into
one immutable `RoutingTable` and replaces it by one assignment, so the request path reads it
without locks and a request keeps the route it started with.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import InvalidInput

if TYPE_CHECKING:
    from gateway.lifecycle.registry import VersionEntry

# Why the answering version was chosen; named in the response and the prediction record.
WEIGHT = "weight"
STICKY = "sticky"
PINNED = "pinned"
FAILOVER = "failover"


@dataclass(frozen=True)
class TrafficPolicy:
    """Who serves a deployment. `weights` keep their order (the JSON order) for stable output."""

    weights: tuple[tuple[str, int], ...]
    sticky: bool = False
    shadows: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()

    @classmethod
    def single(cls, version: str) -> TrafficPolicy:
        return cls(weights=((version, 100),))

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> TrafficPolicy:
        """From the admin API's JSON. Raises InvalidInput for anything malformed; whether the
        versions exist is the registry's question."""
        known = {"weights", "sticky", "shadows", "fallback"}
        unknown = set(document) - known
        if unknown:
            raise InvalidInput(f"unknown traffic keys: {', '.join(sorted(unknown))}")
        weights = document.get("weights")
        if not isinstance(weights, Mapping) or not weights:
            raise InvalidInput("'weights' must map versions to integer weights")
        checked: list[tuple[str, int]] = []
        for version, weight in weights.items():
            if not isinstance(weight, int) or isinstance(weight, bool):
                raise InvalidInput(f"the weight of version '{version}' must be an integer")
            if weight < 0:
                raise InvalidInput(f"the weight of version '{version}' is negative ({weight})")
            checked.append((str(version), weight))
        if sum(w for _, w in checked) == 0:
            raise InvalidInput("the weights are all zero: no version would take traffic")
        sticky = document.get("sticky", False)
        if not isinstance(sticky, bool):
            raise InvalidInput("'sticky' must be true or false")
        return cls(
            weights=tuple(checked),
            sticky=sticky,
            shadows=_versions(document.get("shadows", []), "shadows"),
            fallback=_versions(document.get("fallback", []), "fallback"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "sticky": self.sticky,
            "shadows": list(self.shadows),
            "fallback": list(self.fallback),
        }

    @property
    def versions(self) -> frozenset[str]:
        """Every version this policy sends requests or copies to."""
        return frozenset(v for v, _ in self.weights) | set(self.shadows) | set(self.fallback)

    @property
    def production(self) -> str:
        """The version with the largest share (the first of equals): whose metadata the
        deployment reports and against which a canary is judged."""
        return max(self.weights, key=lambda item: item[1])[0]

    def share(self, version: str) -> float:
        total = sum(w for _, w in self.weights)
        return dict(self.weights).get(version, 0) / total


def _versions(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise InvalidInput(f"'{what}' must be a list of versions")
    versions = tuple(str(v) for v in value)
    if len(set(versions)) != len(versions):
        raise InvalidInput(f"'{what}' names a version twice")
    return versions


class Route:
    """One deployment's compiled policy: entries are READY versions, fixed for its lifetime."""

    __slots__ = ("_bounds", "_choices", "_fallback", "_total", "shadows", "sticky")

    def __init__(
        self,
        weighted: Sequence[tuple[VersionEntry, int]],
        sticky: bool,
        shadows: Sequence[VersionEntry],
        fallback: Sequence[VersionEntry],
    ) -> None:
        serving = [(entry, weight) for entry, weight in weighted if weight > 0]
        self._choices = tuple(entry for entry, _ in serving)
        bounds, total = [], 0
        for _, weight in serving:
            total += weight
            bounds.append(total)
        self._bounds = tuple(bounds)
        self._total = total
        self._fallback = tuple(fallback)
        self.sticky = sticky
        self.shadows = tuple(shadows)

    def pick(self, key: str | None) -> tuple[VersionEntry, str]:
        """The version for one request and why: a key's hash when sticky (the same version for
        a key on every worker and replica with this policy), a weighted draw otherwise."""
        if len(self._choices) == 1:
            return self._choices[0], WEIGHT
        if self.sticky and key:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") % self._total
            reason = STICKY
        else:
            point = int(random.random() * self._total)  # a traffic split, not a secret
            reason = WEIGHT
        return self._choices[bisect.bisect_right(self._bounds, point)], reason

    def chain(self, first: VersionEntry) -> tuple[VersionEntry, ...]:
        """`first`, then the fallback versions in order (without `first`)."""
        if not self._fallback:
            return (first,)
        return (first, *(entry for entry in self._fallback if entry is not first))


@dataclass(frozen=True)
class RoutingTable:
    routes: Mapping[str, Route]

    def get(self, deployment: str) -> Route | None:
        return self.routes.get(deployment)


EMPTY_TABLE = RoutingTable({})
