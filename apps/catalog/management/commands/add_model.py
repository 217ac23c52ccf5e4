"""manage.py add_model NAME (--adapter A [--config JSON] | --router JSON) [--public] [--tenants a,b]
[--description D] [--price-prompt P] [--price-completion P]

Registers model NAME, served by the registered adapter A with the adapter_config
JSON (an object; default {}). The adapter is created (never loaded) with that
config first: an unknown adapter, or a config the adapter refuses, records
nothing and exits non-zero with the adapter's own message. --public opens it to
every tenant; --tenants grants it to those tenants (slugs, comma-separated).
--router JSON registers a routed model instead: JSON is its router config
(candidates, rules, strategy: apps.catalog.routing, docs/scheduling.md).
--price-prompt / --price-completion: prices per 1,000 tokens (decimal).

Prints the model as one JSON line on stdout (its only output there); messages,
including a placement that finds no worker for it, go to stderr. Running
managed workers take the model up from their next heartbeat, without a restart.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from apps.catalog import services
from apps.catalog.api.serializers import operator_model_representation
from apps.catalog.models import LLMModel
from apps.catalog.routing import ROUTER_ADAPTER
from apps.core.errors import DomainError


def _slugs(value: str) -> list[str]:
    return [slug.strip() for slug in value.split(",") if slug.strip()]


def _price(value: str) -> Decimal:
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise ValueError(value) from None
    if not price.is_finite() or price < 0:
        raise ValueError(value)
    return price


def _tokens(value: str) -> int:
    tokens = int(value)  # a ValueError is argparse's "invalid _tokens value"
    if tokens < 0:
        raise ValueError(value)
    return tokens


class Command(BaseCommand):
    help = "Register a model served by a registered adapter; prints the model as one JSON line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="how tasks name the model: lower-case letters, digits, '.', '_', '-'")
        served = parser.add_mutually_exclusive_group(required=True)
        served.add_argument("--adapter", help="a registered model adapter (echo, transformers, …)")
        served.add_argument("--router", metavar="JSON",
                            help="a routed model: its router config (candidates, rules, strategy), a JSON object")
        parser.add_argument("--config", default="{}", metavar="JSON", help="the adapter_config, a JSON object")
        parser.add_argument("--price-prompt", type=_price, default=None, metavar="PRICE",
                            help="price per 1,000 prompt tokens")
        parser.add_argument("--price-completion", type=_price, default=None, metavar="PRICE",
                            help="price per 1,000 completion tokens")
        parser.add_argument("--time-slice-tokens", type=_tokens, default=None, metavar="N",
                            help="tokens a generation runs before it yields its slot to a waiting task of its "
                                 "class (0: never; default: the platform's TIME_SLICE_TOKENS)")
        parser.add_argument("--public", action="store_true", help="every tenant may use it")
        parser.add_argument("--tenants", type=_slugs, default=[], metavar="SLUGS",
                            help="comma-separated slugs of the tenants granted it")
        parser.add_argument("--description", default="", help="what operators and tenants read about it")

    def handle(self, *args, name: str, **options) -> None:
        router = options["router"] is not None
        option = "--router" if router else "--config"
        try:
            config = json.loads(options["router"] if router else options["config"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"{option} is not valid JSON: {exc}") from exc
        try:
            model = services.create_model(
                name,
                ROUTER_ADAPTER if router else options["adapter"],
                config,
                price_prompt_per_1k=options["price_prompt"],
                price_completion_per_1k=options["price_completion"],
                time_slice_tokens=options["time_slice_tokens"],
                description=options["description"],
                is_public=options["public"],
                tenants=options["tenants"],
            )
        except DomainError as exc:  # ModelError (the adapter's own message), or the name in use
            raise CommandError(exc.message) from exc
        # The placement ran when the model was committed (services.catalog_changed).
        model = LLMModel.objects.select_related("current_version").prefetch_related("allowed_tenants").get(pk=model.pk)
        shown = operator_model_representation(model)
        self.stderr.write(f"model {model.name} registered; workers serving every model take it up at their next "
                          "heartbeat")
        if not shown["is_public"] and not shown["tenants"]:
            self.stderr.write("warning: no tenant may use it yet (neither --public nor --tenants)")
        self.stdout.write(json.dumps(shown, cls=DjangoJSONEncoder))
