"""One hash scheme: every new link is sha256("prev_hash:chain:seq:" + content digest).

Until now the patient chains (0-63) hashed the canonical JSON of the whole event and the
group writers' chains (1000-1999) the link form above; two schemes, two code paths, and
`chain.link` made the whole-JSON one. From here on `chain.link` makes the link form too.

The links already made stay as they are (the log is append-only; rehashing it would be a
rewrite no anchor could vouch for). So that they still verify, each chain head records how
far its chain was made with the whole-JSON scheme: `whole_json_until`, set here to where
each patient chain stands (its seq) and never moved after; the writers' chains keep 0.
`verify_audit` checks a link at or below it the old way and every later link the new way
(audit/chain.py). Run it with the portal stopped, as every migration: a process of the
old code still linking patient chains after this would make links that fail to verify
(loudly, not silently).

Editing `whole_json_until` gains a forger nothing: a link checked by the wrong scheme
fails, and the anchors pin the hashes either way.
"""

from django.db import migrations, models

CHAINS = 64  # audit/chain.py CHAINS: the patient chains, the only ones with whole-JSON links

FORWARD = "UPDATE audit_auditchainhead SET whole_json_until = seq WHERE chain < %s"


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.execute(FORWARD, params=[CHAINS])


class Migration(migrations.Migration):
    dependencies = [("audit", "0016_event_types_in_registry")]

    operations = [
        migrations.AddField(
            model_name="auditchainhead",
            name="whole_json_until",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        # Backward: the column goes and the whole-JSON links simply stay.
        migrations.RunPython(forward, migrations.RunPython.noop),
    ]
