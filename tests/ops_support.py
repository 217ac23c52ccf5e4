"""The operator API as the URL resolver knows it, and operators holding its permissions.

Found from the resolver, not listed by hand: an endpoint added under
/api/v1/ops/ is covered by the permission tests without touching them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import URLPattern, URLResolver, get_resolver

OPS_PREFIX = "api/v1/ops/"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class OpsEndpoint:
    route: str  # "api/v1/ops/tenants/<slug:slug>/plan"
    view_class: type
    method: str  # one the view handles

    @property
    def permission(self) -> str | None:
        return getattr(self.view_class, "operator_permissions", {}).get(self.method)

    def path(self, **values: str) -> str:
        """The URL with its parameters (by name) filled in."""
        return "/" + _PARAMETER.sub(lambda match: values[match.group(1)], self.route)

    def __str__(self) -> str:
        return f"{self.method} /{self.route}"


def ops_endpoints() -> list[OpsEndpoint]:
    """Every (route, method) the operator API answers."""
    return [
        OpsEndpoint(route, view_class, method)
        for route, view_class in _routes(get_resolver().url_patterns, "")
        if route.startswith(OPS_PREFIX)
        for method in METHODS
        if hasattr(view_class, method.lower())
    ]


def _routes(patterns: Sequence[URLPattern | URLResolver], prefix: str) -> Iterator[tuple[str, type]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, route)
        elif (view_class := getattr(entry.callback, "view_class", None)) is not None:
            yield route, view_class


def operator_permissions() -> set[str]:
    """Every permission the operator API asks for ("app_label.codename")."""
    return {endpoint.permission for endpoint in ops_endpoints() if endpoint.permission}


def grant(user, *permissions: str) -> None:
    """Give ``user`` these model permissions ("app_label.codename")."""
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def make_operator(username: str = "ops", permissions: Sequence[str] | None = None):
    """An active staff user with ``permissions`` (default: all the operator API asks for)."""
    # No password: force_login and operator tokens need none, and hashing one is slow.
    user = get_user_model().objects.create_user(username, password=None, is_staff=True)
    grant(user, *(operator_permissions() if permissions is None else permissions))
    return user
