from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from pjd_portal.accounts.keys import ensure_client_key


class Command(BaseCommand):
    help = "Create the portal's OIDC client key pair (development) unless it exists."

    def handle(self, *args: Any, **options: Any) -> None:
        private_path = settings.OIDC_RP_CLIENT_PRIVATE_KEY_FILE
        jwks_path = private_path.with_name("oidc_client_jwks.json")
        created = ensure_client_key(private_path, jwks_path)
        self.stdout.write(f"{'Created' if created else 'Kept'} client key; public JWKS at {jwks_path}")
