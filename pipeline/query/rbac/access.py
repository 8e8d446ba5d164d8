"""What one principal may do: for each action, the services it may see.

A principal's roles are combined per action: it may search service S when one of its
roles allows ``search`` and covers S. Service patterns are shell globs (``payment*``),
matched case-sensitively as service names are. Answers are cached per service name:
a request asks about the same few services for every span of a trace.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.query.rbac.roles import ACTIONS, Action, Role


class ServiceMatcher:
    """Services named or globbed by some patterns; ``"*"`` alone matches everything."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(sorted(set(patterns)))
        self.everything = "*" in self.patterns
        self._regex = (
            re.compile("|".join(fnmatch.translate(p) for p in self.patterns))
            if self.patterns
            else None
        )
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __call__(self, service: str) -> bool:
        if self.everything:
            return True
        seen = self._seen.get(service)
        if seen is None:
            seen = self._seen[service] = bool(self._regex and self._regex.match(service))
        return seen


EVERY_SERVICE = ServiceMatcher(["*"])


@dataclass
class Access:
    """A principal and, per action, the services it may see. ``unrestricted`` (RBAC off,
    or roles granting every service for every action) lets handlers skip filtering."""

    principal: str
    roles: tuple[str, ...]
    matchers: dict[Action, ServiceMatcher]
    unrestricted: bool = False
    _any: ServiceMatcher | None = field(default=None, repr=False)

    @classmethod
    def everything(cls, principal: str = "anonymous") -> Access:
        return cls(principal, (), dict.fromkeys(ACTIONS, EVERY_SERVICE), unrestricted=True)

    @classmethod
    def of_roles(cls, principal: str, names: Iterable[str], roles: dict[str, Role]) -> Access:
        held = tuple(dict.fromkeys(name for name in names if name in roles))
        patterns: dict[Action, list[str]] = {action: [] for action in ACTIONS}
        for name in held:
            role = roles[name]
            for action in role.allowed_actions():
                patterns[action].extend(role.services)
        matchers = {action: ServiceMatcher(found) for action, found in patterns.items()}
        unrestricted = all(matcher.everything for matcher in matchers.values())
        return cls(principal, held, matchers, unrestricted)

    def may(self, action: Action) -> bool:
        """Whether some role allows ``action`` on at least one service."""
        return bool(self.matchers[action])

    def sees(self, action: Action) -> ServiceMatcher:
        return self.matchers[action]

    def sees_any(self) -> ServiceMatcher:
        """Services the principal may know of at all: those some action covers (service
        and operation lists show these)."""
        if self._any is None:
            self._any = ServiceMatcher(p for m in self.matchers.values() for p in m.patterns)
        return self._any
