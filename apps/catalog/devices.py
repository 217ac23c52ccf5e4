"""Where a model version runs."""

from django.db import models


class Device(models.TextChoices):
    CPU = "cpu"
    GPU = "gpu"
