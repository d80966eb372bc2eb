"""Document sources: the local store and remote IHE MHD sources behind one interface.

`client_for(source)` picks the client for a `DocumentSource`: an MHD client when the
source's organisation number is configured in `PJD_MHD_SOURCES` (setting `MHD_SOURCES`),
else the local store.
"""

from __future__ import annotations

import threading

from django.conf import settings

from pjd_portal.accounts import provider
from pjd_portal.documents.models import DocumentSource
from pjd_portal.documents.sources.base import DocumentSourceClient
from pjd_portal.documents.sources.local import LocalSourceClient
from pjd_portal.documents.sources.mhd import MhdSourceClient
from pjd_portal.documents.sources.tokens import (
    ClientCredentialsTokenProvider,
    StaticTokenProvider,
    TokenProvider,
)

_token_providers: dict[tuple[str, str], TokenProvider] = {}
_lock = threading.Lock()


def _token_provider(scope: str, use_token: bool) -> TokenProvider:
    if not use_token:
        return StaticTokenProvider(None)
    key = (settings.OIDC_OP_TOKEN_ENDPOINT, scope)
    with _lock:
        if key not in _token_providers:  # one per scope, so the token cache is shared
            _token_providers[key] = ClientCredentialsTokenProvider(
                token_endpoint=settings.OIDC_OP_TOKEN_ENDPOINT,
                client_id=settings.OIDC_RP_CLIENT_ID,
                private_key=provider.client_private_key,
                scope=scope,
                timeout=settings.OIDC_TIMEOUT,
            )
        return _token_providers[key]


def client_for(source: DocumentSource) -> DocumentSourceClient:
    config = settings.MHD_SOURCES.get(source.organisation.orgnr)
    if not config:
        return LocalSourceClient(source)
    return MhdSourceClient.from_settings(
        source_id=source.pk,
        orgnr=source.organisation.orgnr,
        name=source.name,
        base_url=str(config["base_url"]),
        token_provider=_token_provider(str(config.get("scope", "")), bool(config.get("token", True))),
    )
