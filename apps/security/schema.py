"""OpenAPI description of operator-token authentication (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


class OperatorTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.security.authentication.OperatorTokenAuthentication"
    name = "OperatorToken"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Authorization: Bearer llo_… — an operator token, for /api/v1/ops/ only; "
            "a staff user gets one from `manage.py create_operator_token USERNAME`",
        }
