"""OpenAPI description of API key authentication (drf-spectacular extension)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from apps.security.authentication import OperatorTokenAuthentication


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.tenants.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"}

    def get_security_requirement(self, auto_schema: AutoSchema) -> Any:
        # An endpoint that takes operator tokens is an operator's: it recognises a
        # tenant's key only to refuse it (403 staff_only), so the key is no way in.
        if any(isinstance(auth, OperatorTokenAuthentication) for auth in auto_schema.view.get_authenticators()):
            return None
        return super().get_security_requirement(auto_schema)
