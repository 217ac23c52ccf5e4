"""manage.py add_model_version NAME VERSION ARTIFACT [--sha256 HEX] [--make-current] ...

Records a version of model NAME whose artifact is the local file or directory
ARTIFACT (a path or a file:// URI; nothing is downloaded). Its sha256 and size
are computed here; with --sha256 the artifact must hash to that value, else
nothing is recorded and the exit status is non-zero. The device and GPU
memory it needs are asked of the model's adapter unless given.

Prints "NAME@VERSION SHA256 SIZE_BYTES" on stdout (its only output there);
messages, including a placement that finds no worker for it, go to stderr.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.catalog import services
from apps.catalog.models import Device, LLMModel, ModelVersion


class Command(BaseCommand):
    help = "Add a version of a model from a local artifact (file or directory), measured and verified."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the model's name")
        parser.add_argument("version", help="the version's label, e.g. v2 (tasks pin it as NAME@VERSION)")
        parser.add_argument("artifact", help="local path or file:// URI of the weights (file or directory)")
        parser.add_argument("--sha256", help="expected sha256: refuse the artifact if it hashes otherwise")
        parser.add_argument("--make-current", action="store_true", help="move the model's alias to this version")
        parser.add_argument("--device", choices=Device.values, help="what it runs on (default: ask the adapter)")
        parser.add_argument(
            "--gpu-memory", type=int, metavar="BYTES", help="GPU memory it needs (default: ask the adapter)"
        )
        parser.add_argument("--config", default="{}", metavar="JSON", help="adapter_config overrides (a JSON object)")

    def handle(self, *args, name: str, version: str, artifact: str, **options) -> None:
        model = LLMModel.objects.filter(name=name).first()
        if model is None:
            raise CommandError(f"no model named {name!r}")
        try:
            overrides = json.loads(options["config"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not valid JSON: {exc}") from exc
        if not isinstance(overrides, dict):
            raise CommandError("--config must be a JSON object")
        try:
            created = services.create_version(
                model,
                version,
                artifact,
                sha256=options["sha256"],
                adapter_config=overrides,
                device=options["device"],
                gpu_memory_bytes=options["gpu_memory"],
                make_current=options["make_current"],
            )
        except services.VersionError as exc:
            raise CommandError(str(exc)) from exc
        # Placement ran when the version was committed (apps.catalog.services.catalog_changed).
        created = ModelVersion.objects.select_related("model").get(pk=created.pk)
        if created.is_current:
            self.stderr.write(f"{created.spec} is now the current version of {name}")
        if created.placement_error:
            self.stderr.write(f"warning: no worker can host {created.spec}: {created.placement_error}")
        self.stdout.write(f"{created.spec} {created.sha256} {created.size_bytes}")
