"""Plans, the budget ledger and per-task charges; every tenant gets the default plan.

The default plan is created from the Plan fields' defaults (its values live in
one place: the model). Tenant.plan becomes NOT NULL in the next migration:
PostgreSQL refuses to alter a table with pending trigger events from the
back-fill in the same transaction.
"""

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

DEFAULT_PLAN_NAME = "default"


def create_default_plan_for_every_tenant(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    Tenant = apps.get_model("tenants", "Tenant")
    plan, _ = Plan.objects.get_or_create(name=DEFAULT_PLAN_NAME)
    Tenant.objects.filter(plan__isnull=True).update(plan=plan)


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='Plan',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100, unique=True)),
                ('rpm', models.PositiveIntegerField(blank=True, default=600, help_text='task submissions per minute; empty: no limit', null=True, verbose_name='requests per minute')),
                ('tpm', models.PositiveIntegerField(blank=True, default=1000000, help_text='worst-case tokens (prompt estimate + max_tokens) admitted per minute; empty: no limit', null=True, verbose_name='tokens per minute')),
                ('budget_tokens', models.PositiveBigIntegerField(blank=True, default=None, help_text='tokens per budget period; empty: no budget', null=True)),
                ('budget_period', models.CharField(choices=[('month', 'Month'), ('day', 'Day'), ('none', 'None')], default='month', max_length=8)),
                ('max_running', models.PositiveIntegerField(blank=True, default=64, help_text='tasks running at once; more wait their turn (never an error)', null=True)),
                ('max_queued', models.PositiveIntegerField(blank=True, default=1000, help_text='tasks queued or waiting at once; more are refused (429)', null=True)),
                ('weight', models.FloatField(default=1.0, help_text='fair-share weight: a larger share of busy models', validators=[django.core.validators.MinValueValidator(0.001)])),
                ('max_priority', models.CharField(choices=[('interactive', 'Interactive'), ('normal', 'Normal'), ('batch', 'Batch')], default='interactive', help_text='the highest priority class this tenant may submit', max_length=16)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='QuotaState',
            fields=[
                ('tenant', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='quota_state', serialize=False, to='tenants.tenant')),
                ('requests_tat', models.FloatField(default=0.0)),
                ('tokens_tat', models.FloatField(default=0.0)),
            ],
        ),
        migrations.CreateModel(
            name='BudgetLedger',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('period', models.CharField(choices=[('month', 'Month'), ('day', 'Day'), ('none', 'None')], max_length=8)),
                ('period_start', models.DateTimeField()),
                ('spent_tokens', models.PositiveBigIntegerField(default=0)),
                ('reserved_tokens', models.PositiveBigIntegerField(default=0)),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='budget_ledgers', to='tenants.tenant')),
            ],
            options={
                'ordering': ['tenant', '-period_start'],
            },
        ),
        migrations.AddField(
            model_name='tenant',
            name='plan',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='tenants', to='tenants.plan'),
        ),
        migrations.RunPython(create_default_plan_for_every_tenant, migrations.RunPython.noop),
        migrations.CreateModel(
            name='TaskCharge',
            fields=[
                ('task_id', models.UUIDField(primary_key=True, serialize=False)),
                ('reserved_tokens', models.PositiveIntegerField()),
                ('prompt_tokens', models.PositiveIntegerField(default=0)),
                ('completion_tokens', models.PositiveIntegerField(default=0)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('settled_at', models.DateTimeField(blank=True, null=True)),
                ('api_key', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='task_charges', to='tenants.apikey')),
                ('ledger', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='charges', to='tenants.budgetledger')),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='task_charges', to='tenants.tenant')),
            ],
        ),
        migrations.AddConstraint(
            model_name='budgetledger',
            constraint=models.UniqueConstraint(fields=('tenant', 'period', 'period_start'), name='unique_budget_period'),
        ),
        migrations.AddIndex(
            model_name='taskcharge',
            index=models.Index(fields=['ledger', 'api_key'], name='charge_ledger_key'),
        ),
        migrations.AddIndex(
            model_name='taskcharge',
            index=models.Index(fields=['settled_at', 'created_at'], name='charge_unsettled'),
        ),
    ]
