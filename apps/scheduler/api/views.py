"""Usage: what a tenant has used and has left (tenants, and operators for any tenant),
and its report by day and model (JSON or CSV)."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, renderers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.openapi import api_responses
from apps.scheduler import usage
from apps.scheduler.admission import usage_report
from apps.scheduler.api.serializers import (
    TenantUsageSerializer,
    UsageReportQuerySerializer,
    UsageReportSerializer,
    UsageSerializer,
    usage_report_representation,
    usage_representation,
)
from apps.tenants.api.views import OperatorTenantView
from apps.tenants.models import Scope
from apps.tenants.permissions import tenant_of


class UsageView(APIView):
    """GET /api/v1/usage: the calling tenant's budget, rate limits and queue, per key too."""

    required_scope = Scope.USAGE_READ.value

    @extend_schema(tags=["usage"], responses=api_responses({200: UsageSerializer}))
    def get(self, request: Request) -> Response:
        return Response(usage_representation(usage_report(tenant_of(request))))


class CSVRenderer(renderers.BaseRenderer):
    """text/csv, chosen by ``?format=csv`` or ``Accept: text/csv``; the view hands it the CSV text."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode(self.charset) if isinstance(data, str) else data


class UsageReportView(APIView):
    """GET /api/v1/usage/report: the calling tenant's tasks and tokens by day and model."""

    required_scope = Scope.USAGE_READ.value
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]

    @extend_schema(
        tags=["usage"],
        parameters=[UsageReportQuerySerializer],
        responses=api_responses(
            {
                200: OpenApiResponse(
                    UsageReportSerializer,
                    description="JSON; with ?format=csv or Accept: text/csv, the rows as CSV "
                    f"({', '.join(usage.CSV_COLUMNS)})",
                ),
            },
            400,
        ),
    )
    def get(self, request: Request) -> Response:
        query = UsageReportQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        tenant = tenant_of(request)
        period = usage.usage_period(query.validated_data.get("since"), query.validated_data.get("until"))
        rows = usage.usage_by_day(tenant, period)
        if isinstance(request.accepted_renderer, CSVRenderer):
            download = f'attachment; filename="{usage.usage_csv_filename(tenant, period)}"'
            return Response(usage.usage_csv(rows), headers={"Content-Disposition": download})
        return Response(usage_report_representation(period, rows))

    def perform_content_negotiation(self, request: Request, force: bool = False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:  # ?format= names a format the report does not come in
            raise exceptions.ValidationError(
                {"format": [exceptions.ErrorDetail('"json" or "csv"', code="invalid_choice")]}
            ) from None

    def handle_exception(self, exc: Exception) -> Response:
        # A refusal keeps the Contracts' JSON error shape, whatever format was asked for.
        self.request.accepted_renderer, self.request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return super().handle_exception(exc)


class OperatorUsageView(OperatorTenantView):
    # The admin shows usage as the budget ledger.
    operator_permissions = {"GET": "tenants.view_budgetledger"}

    @extend_schema(tags=["ops"], responses=api_responses({200: TenantUsageSerializer}, 404))
    def get(self, request: Request, slug: str) -> Response:
        tenant = self.tenant(slug)
        return Response({"tenant": tenant.slug, **usage_representation(usage_report(tenant))})
