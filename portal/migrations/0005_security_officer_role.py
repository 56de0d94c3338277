# Separation of duties (DESIGN §2): the security officer role, and the operator-auditor flag.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0004_audit_chain_async'),
    ]

    operations = [
        migrations.AddField(
            model_name='user',
            name='also_auditor',
            field=models.BooleanField(default=False, verbose_name='also auditor'),
        ),
        migrations.AlterField(
            model_name='user',
            name='role',
            field=models.CharField(choices=[('national_operator', 'National operator'), ('region_admin', 'Region administrator'), ('clerk', 'Clerk'), ('auditor', 'Auditor'), ('security_officer', 'Security officer')], default='clerk', max_length=32, verbose_name='role'),
        ),
    ]
