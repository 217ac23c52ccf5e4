"""manage.py purge_expired_outputs: erase finished tasks older than their tenant's retention.

Prints the number of tasks erased (its only output on stdout). The scheduler
also runs it daily (apps.scheduler.jobs).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.tasks.retention import purge_expired_outputs


class Command(BaseCommand):
    help = "Erase the input and output of finished tasks older than their tenant's output_retention_days."

    def handle(self, *args, **options) -> None:
        self.stdout.write(str(purge_expired_outputs()))
