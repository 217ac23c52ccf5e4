"""Both operator groups may read the audit log (0009 added it after 0008 made the groups).

Values are written out here, not imported: a migration is frozen in time.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = ("read-only operator", "operator")


def grant_view_auditevent(apps, schema_editor):
    # On a fresh database Django creates permissions only after all migrations.
    tenants = apps.get_app_config("tenants")
    tenants.models_module = True
    create_permissions(tenants, apps=apps, verbosity=0)
    tenants.models_module = None
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.get(content_type__app_label="tenants", codename="view_auditevent")
    for group in apps.get_model("auth", "Group").objects.filter(name__in=GROUPS):
        group.permissions.add(view)


def revoke_view_auditevent(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    view = Permission.objects.filter(content_type__app_label="tenants", codename="view_auditevent")
    for group in apps.get_model("auth", "Group").objects.filter(name__in=GROUPS):
        group.permissions.remove(*view)


class Migration(migrations.Migration):

    dependencies = [("tenants", "0009_helpere_audit")]

    operations = [migrations.RunPython(grant_view_auditevent, revoke_view_auditevent)]
