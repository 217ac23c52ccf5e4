"""Seeds the public echo model every installation serves."""

from django.db import migrations


def seed_echo(apps, schema_editor):
    LLMModel = apps.get_model("catalog", "LLMModel")
    LLMModel.objects.get_or_create(
        name="echo",
        defaults={
            "description": "Echoes the prompt back word by word. Not a language model: "
            "for testing and measuring the platform.",
            "adapter": "echo",
            "adapter_config": {},
            "is_public": True,
            "enabled": True,
        },
    )


def unseed_echo(apps, schema_editor):
    apps.get_model("catalog", "LLMModel").objects.filter(name="echo", tasks__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed_echo, unseed_echo)]
