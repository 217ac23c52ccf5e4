"""Every tenant has a plan (0002 gave the existing ones the default plan)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0002_plans_and_usage_ledger"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tenant",
            name="plan",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="tenants", to="tenants.plan"
            ),
        ),
    ]
