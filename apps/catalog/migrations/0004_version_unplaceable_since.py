from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_model_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelversion",
            name="unplaceable_since",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
