from django.contrib.auth.management import create_permissions
from django.db import migrations

# What the Support group may do in the admin: see everything about deliveries, and replay.
SUPPORT_PERMISSIONS = [
    ("deliveries", "view_deadletter"),
    ("deliveries", "view_delivery"),
    ("deliveries", "view_deliveryattempt"),
    ("deliveries", "view_deliveryreplay"),
    ("deliveries", "view_event"),
    ("deliveries", "replay_delivery"),
    ("endpoints", "view_endpoint"),
    ("endpoints", "view_endpointauditentry"),
    ("clientflow_webhooks", "view_workspace"),
]


def create_support_group(apps, schema_editor):
    # Permissions are normally created after all migrations; this one needs them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Support")
    for app_label, codename in SUPPORT_PERMISSIONS:
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_support_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Support").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("clientflow_webhooks", "0001_initial"),
        ("endpoints", "0002_endpoint_audit"),
        ("deliveries", "0002_dead_letters_and_replays"),
    ]

    operations = [migrations.RunPython(create_support_group, remove_support_group)]
