from django.urls import include, path, re_path, register_converter

from pjd_portal.accounts import sessions as session_views
from pjd_portal.citizen_api import views as audit_api
from pjd_portal.clinic import document_views, launch_views, patient_views, smart_views
from pjd_portal.epj_api import launch as epj_launch
from pjd_portal.epj_api import views as mhd_api
from pjd_portal.forvaltning import logreview as logreview_views
from pjd_portal.forvaltning import privacy as privacy_views
from pjd_portal.forvaltning import roles as roles_views
from pjd_portal.forvaltning import views as forvaltning_views
from pjd_portal.lib import health, metrics
from pjd_portal.login import views as account_views
from pjd_portal.login.oidc import PortalAuthenticateView, PortalCallbackView
from pjd_portal.review import overview as overview_views
from pjd_portal.review import views as review_views


class FhirIdConverter:
    r"""A FHIR logical id (R4: [A-Za-z0-9\-\.]{1,64}): a remote document's id at its source."""

    regex = r"[A-Za-z0-9\-.]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(FhirIdConverter, "fhir_id")

accounts_patterns = (
    [
        path("", account_views.home, name="home"),
        path("logg-ut/", account_views.logout, name="logout"),
        path("logget-ut/", account_views.logged_out, name="logged_out"),
        path("sesjon-utlopt/", session_views.session_expired, name="session_expired"),
        path("sesjon/status/", session_views.session_status, name="session_status"),
        path("sesjon/forleng/", session_views.session_keepalive, name="session_keepalive"),
        path(".well-known/jwks.json", account_views.client_jwks, name="client_jwks"),
        path("velg-virksomhet/", account_views.choose_organisation, name="choose_organisation"),
    ],
    "accounts",
)
patients_patterns = (
    [
        path("sok/", patient_views.patient_lookup, name="lookup"),
        path("<uuid:handle>/grunnlag/", patient_views.patient_basis, name="basis"),
        path("<uuid:handle>/forhoyet/", patient_views.patient_elevated, name="elevated"),
    ],
    "patients",
)
documents_patterns = (
    [
        path("<uuid:handle>/", document_views.document_list, name="list"),
        path("<uuid:handle>/dokument/<uuid:document_id>/", document_views.document_open, name="open"),
        # The viewer: the document beside the list (its PDF framed from the open above).
        path("<uuid:handle>/dokument/<uuid:document_id>/vis/", document_views.document_view, name="view"),
        # One remote source's part of the list (an htmx fragment request).
        path(
            "<uuid:handle>/kilde/<int:source_id>/liste/",
            document_views.document_list_source,
            name="list_source",
        ),
        # A document at a remote (MHD) source: its source and the source's own id.
        path(
            "<uuid:handle>/kilde/<int:source_id>/dokument/<fhir_id:document_id>/",
            document_views.remote_document_open,
            name="open_remote",
        ),
        path(
            "<uuid:handle>/kilde/<int:source_id>/dokument/<fhir_id:document_id>/vis/",
            document_views.remote_document_view,
            name="view_remote",
        ),
    ],
    "documents",
)

# The administration area: its own URL space; a 404 for everyone the policy keeps out.
forvaltning_patterns = (
    [
        path("innsyn/", forvaltning_views.patient_access_log, name="patient_log"),
        # Patients' privacy choices, for the privacy officer (forvaltning/privacy.py).
        path("personvern/", privacy_views.privacy_lookup, name="privacy_lookup"),
        path("personvern/<uuid:handle>/", privacy_views.privacy_patient, name="privacy_patient"),
        path("personvern/<uuid:handle>/registrer/", privacy_views.privacy_register, name="privacy_register"),
        path("personvern/<uuid:handle>/opphev/", privacy_views.privacy_lift, name="privacy_lift"),
        path(
            "personvern/<uuid:handle>/sperr-dokument/",
            privacy_views.privacy_block_document,
            name="privacy_block_document",
        ),
        path(
            "personvern/<uuid:handle>/opphev-dokumentsperre/",
            privacy_views.privacy_unblock_document,
            name="privacy_unblock_document",
        ),
        # Log review (loggkontroll) for an organisation's auditors.
        path("loggkontroll/", logreview_views.log_search, name="log_search"),
        path("loggkontroll/hendelse/<uuid:event_id>/", logreview_views.log_event, name="log_event"),
        path("loggkontroll/eksport/", logreview_views.log_export, name="log_export"),
        # Access roles, for an organisation's access administrators (forvaltning/roles.py).
        path("tilgang/", roles_views.access_roles, name="access_roles"),
        path("tilgang/tildel/", roles_views.access_role_grant, name="access_role_grant"),
        path("tilgang/trekk-tilbake/", roles_views.access_role_revoke, name="access_role_revoke"),
        # The review queue (pjd_portal/review): flagged and sampled events, with a status.
        path("loggkontroll/ko/", review_views.review_queue, name="review_queue"),
        path("loggkontroll/ko/<uuid:item_id>/", review_views.review_item, name="review_item"),
        path(
            "loggkontroll/ko/<uuid:item_id>/status/",
            review_views.review_item_status,
            name="review_item_status",
        ),
        # The auditor's overview: counts and charts over a period (review/overview.py).
        path("loggkontroll/oversikt/", overview_views.log_overview, name="log_overview"),
    ],
    "forvaltning",
)
# Token-authenticated APIs (no session, no CSRF); SESSIONLESS_PATH_PREFIX in accounts/sessions.py.
fhir_patterns = (
    [
        path("AuditEvent/_search", audit_api.auditevent_search, name="auditevent_search"),
        # The IHE MHD API for EPJ systems (epj_api/views.py; docs/epj.md, "2. The MHD API").
        path("metadata", mhd_api.metadata, name="metadata"),
        path("DocumentReference/_search", mhd_api.documentreference_search, name="documentreference_search"),
        path("DocumentReference", mhd_api.documentreference, name="documentreference"),
        path("Binary/<fhir_id:binary_id>", mhd_api.binary_read, name="binary"),
        # Anything else under the base: an OperationOutcome, never the portal's HTML 404.
        re_path(r"^(?P<rest>.*)$", mhd_api.unknown, name="unknown"),
    ],
    "fhir",
)

urlpatterns = [
    # For the load balancer, the orchestrator and the scraper (docs/operations.md): no
    # login, no session, no access event.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("", include(accounts_patterns)),
    path("pasient/", include(patients_patterns)),
    path("pasient/", include(documents_patterns)),
    path("forvaltning/", include(forvaltning_patterns)),
    path("api/fhir/", include(fhir_patterns)),
    path("api/openapi.json", mhd_api.openapi_description, name="openapi"),
    # The launch from the EPJ (docs/epj.md): the code for the EPJ, then the browser's way in.
    path("api/launch", epj_launch.launch_code, name="epj_launch"),
    path("start/", launch_views.epj_start, name="epj_start"),
    path("start/fortsett/", launch_views.epj_start_finish, name="epj_start_finish"),
    # Only the two OIDC views the portal uses: mozilla-django-oidc's own logout view
    # would end sessions without an audit event.
    path("oidc/authenticate/", PortalAuthenticateView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", PortalCallbackView.as_view(), name="oidc_authentication_callback"),
    # SMART on FHIR EHR launch: where an EHR opens the portal (docs/epj.md, section 3).
    path("smart/launch", smart_views.smart_launch, name="smart_launch"),
    path("smart/callback/", smart_views.smart_callback, name="smart_callback"),
    path("i18n/", include("django.conf.urls.i18n")),
]

handler400 = "pjd_portal.lib.errors.bad_request"
handler403 = "pjd_portal.lib.errors.forbidden"
handler404 = "pjd_portal.lib.errors.not_found"
handler500 = "pjd_portal.lib.errors.server_error"
