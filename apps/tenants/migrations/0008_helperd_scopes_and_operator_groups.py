"""The new scopes on existing keys, and the two operator groups.

Scopes: ``/api/v1/usage`` now needs ``usage:read``, which every key had in
effect (the endpoint asked for no scope): every existing key gets it. A key
holding every scope there was (what ``create_api_key`` issues: "every scope")
also gets the new management scopes, ``keys:manage`` and ``members:manage``.

Groups (docs/operations.md): "read-only operator" may view every model of the
platform's apps and change nothing; "operator" may view them all and add and
change tenants (their members and keys), plans, models and their versions,
workers and tasks. Deleting stays with superusers. The operator API asks for
the same Django permissions as the admin (apps.tenants.permissions), so a staff
user put in a group can use both. A model added by a later migration joins the
groups in that migration.

Values are written out here, not imported: a migration is frozen in time.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

OLD_SCOPES = {"tasks:read", "tasks:write", "models:read"}
MANAGEMENT_SCOPES = ["keys:manage", "members:manage"]
USAGE_READ = "usage:read"

PLATFORM_APPS = ("tenants", "catalog", "tasks", "workers", "streaming", "security")
READ_ONLY_OPERATOR = "read-only operator"
OPERATOR = "operator"
OPERATOR_MAY_ADD_AND_CHANGE = [
    ("tenants", "tenant"),
    ("tenants", "membership"),
    ("tenants", "apikey"),
    ("tenants", "plan"),
    ("catalog", "llmmodel"),
    ("catalog", "modelversion"),
    ("workers", "worker"),
    ("tasks", "task"),
]


def add_new_scopes(apps, schema_editor):
    ApiKey = apps.get_model("tenants", "ApiKey")
    for key in ApiKey.objects.all():
        scopes = list(key.scopes)
        added = [USAGE_READ] + (MANAGEMENT_SCOPES if OLD_SCOPES <= set(scopes) else [])
        scopes += [scope for scope in added if scope not in scopes]
        if scopes != key.scopes:
            ApiKey.objects.filter(pk=key.pk).update(scopes=scopes)


def _ensure_permissions(apps):
    # Django creates permissions after all migrations (post_migrate); on a fresh
    # database they do not exist yet here.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def create_operator_groups(apps, schema_editor):
    _ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label__in=PLATFORM_APPS, codename__startswith="view_")
    read_only, _ = Group.objects.get_or_create(name=READ_ONLY_OPERATOR)
    read_only.permissions.add(*view)
    operator, _ = Group.objects.get_or_create(name=OPERATOR)
    operator.permissions.add(*view)
    for app_label, model in OPERATOR_MAY_ADD_AND_CHANGE:
        operator.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=app_label, codename__in=[f"add_{model}", f"change_{model}"]
            )
        )


def remove_operator_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[READ_ONLY_OPERATOR, OPERATOR]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0007_helperd_apikey_created_by"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The models whose permissions the groups hold.
        ("catalog", "0003_model_versions"),
        ("tasks", "0006_task_tenant_state"),
        ("workers", "0003_replica_target"),
        ("streaming", "0002_open_stream"),
        ("security", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(add_new_scopes, migrations.RunPython.noop),
        migrations.RunPython(create_operator_groups, remove_operator_groups),
    ]
