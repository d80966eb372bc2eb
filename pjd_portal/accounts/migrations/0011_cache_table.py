"""The database cache's table, where settings choose the database cache (no PJD_CACHE_URL:
the one-command demo and the tests), so that `migrate` alone readies every process to share
the cache. With Redis configured nothing is made. Reversing leaves the table: it holds only
what may be lost."""

from typing import Any

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps: Any, schema_editor: Any) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0010_clientassertionuse"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, migrations.RunPython.noop, elidable=True),
    ]
