"""The two files RBAC reads: roles (YAML) and bearer tokens (one per line).

Roles file::

    roles:
      payments:                     # a role: services it covers, actions it allows
        services: [payment*, checkout]
        actions: [search, read_trace, dependencies, metrics]
        groups: [team-payments]     # SSO groups (proxy header) that hold this role
        users: [alice]              # SSO users that hold it
      sre:
        services: ["*"]
        actions: ["*"]
    anonymous: [sdk]                # roles of requests without credentials (optional)

Tokens file, one token a line, ``#`` starts a comment::

    TOKEN  NAME  ROLE[,ROLE...]

``NAME`` is the principal the audit log shows. ``TOKEN`` may be written as
``sha256:<hex digest>`` so the file holds no usable secret.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from pipeline.config.models import StrictModel
from pipeline.config.yaml_file import (
    ConfigError,
    child_node,
    compose_mapping,
    node_position,
    read_config_file,
    validate_node,
)

Action = Literal["search", "read_trace", "dependencies", "metrics", "sampling"]
ACTIONS: tuple[Action, ...] = ("search", "read_trace", "dependencies", "metrics", "sampling")
ROLE_NAME = r"^[A-Za-z0-9_.:-]+$"
_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")


class Role(StrictModel):
    """One role: the services it covers (names or globs) and what it may do with them."""

    services: Annotated[list[str], Field(min_length=1)]
    actions: Annotated[list[Action | Literal["*"]], Field(min_length=1)]
    groups: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)

    @classmethod
    def unknown_key_owner(cls, data: dict) -> str:
        return "a role"

    def allowed_actions(self) -> frozenset[Action]:
        return frozenset(ACTIONS) if "*" in self.actions else frozenset(self.actions)  # type: ignore[arg-type]


class RolesFile(StrictModel):
    roles: dict[Annotated[str, Field(pattern=ROLE_NAME)], Role]
    anonymous: list[str] = Field(default_factory=list)

    @classmethod
    def unknown_key_owner(cls, data: dict) -> str:
        return "the roles file"


def load_roles(path: Path) -> RolesFile:
    """The roles file, checked: every problem names file, line, column and field; the
    anonymous roles must be defined."""
    source = str(path)
    root, data = compose_mapping(
        read_config_file(path),
        source,
        empty="the file is empty; expected roles: and their services and actions",
        expected="roles: {name: {services, actions}}",
    )
    roles = validate_node(RolesFile, data, root, source)
    for index, name in enumerate(roles.anonymous):
        if name not in roles.roles:
            node, _ = child_node(root, "anonymous")
            item = child_node(node, index)[1] if node is not None else None
            raise ConfigError(
                source,
                f"role {name!r} is not defined under roles",
                field=f"anonymous[{index}]",
                **node_position(item if item is not None else root),
            )
    return roles


@dataclass(frozen=True)
class TokenEntry:
    """Who a token stands for."""

    name: str
    roles: tuple[str, ...]


def token_digest(token: str) -> bytes:
    """What the tokens table is keyed by: looking up a digest tells a timing observer
    nothing about how much of a guessed token was right."""
    return hashlib.sha256(token.encode()).digest()


def load_tokens(path: Path, known_roles: set[str]) -> dict[bytes, TokenEntry]:
    """sha256(token) -> entry; a malformed line or an unknown role names file and line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the tokens file: {exc}") from None
    tokens: dict[bytes, TokenEntry] = {}
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 3:
            raise ConfigError(
                str(path),
                f"expected 'TOKEN NAME ROLE[,ROLE...]', got {len(parts)} fields",
                line=number,
                column=1,
            )
        token, name, role_list = parts
        roles = tuple(role for role in role_list.split(",") if role)
        unknown = [role for role in roles if role not in known_roles]
        if unknown or not roles:
            raise ConfigError(
                str(path),
                f"unknown role {unknown[0]!r}" if unknown else "no role given",
                line=number,
                column=line.index(role_list) + 1,
            )
        hashed = _SHA256.fullmatch(token)
        digest = bytes.fromhex(hashed.group(1)) if hashed else token_digest(token)
        if digest in tokens:
            raise ConfigError(str(path), "the same token is listed twice", line=number, column=1)
        tokens[digest] = TokenEntry(name, roles)
    return tokens
