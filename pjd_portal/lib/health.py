"""/healthz and /readyz: what a load balancer and an orchestrator ask.

/healthz: the process is up and answers (nothing else is touched: no database, no cache,
for a probe without cookies, as probes are; a request with a session cookie has its
session read by the middleware before this view), so that a database outage does not get every instance restarted. /readyz: this instance can
serve now: the database answers, the shared cache answers, and the access log's writer can
write (its table answers; the group writer holds no event past the write timeout). A 503
names what failed, and nothing more (no host, no error text: those go to the log).

Neither needs a login, writes a session or an access event: a probe is no one's access to
a patient. The checks are django-health-check's (Database, Cache) and one of ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from health_check.base import HealthCheck, HealthCheckResult
from health_check.checks import Cache, Database
from health_check.exceptions import ServiceUnavailable

from pjd_portal.auditlog import writer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class AuditWriter(HealthCheck):  # type: ignore[misc]  # django-health-check has no type hints
    """The access log can be written (auditlog/writer.not_ready)."""

    async def run(self) -> None:
        problem = await sync_to_async(writer.not_ready)()
        if problem:
            raise ServiceUnavailable(problem)


@dataclasses.dataclass
class InRequestThread(HealthCheck):  # type: ignore[misc]
    """A synchronous check run in the request's own thread (asgiref's thread-sensitive
    mode, as Django's ORM wants): on the request's connection, not a thread's new one."""

    check: HealthCheck

    async def run(self) -> None:
        await sync_to_async(self.check.run)()


def _checks() -> dict[str, HealthCheck]:
    return {
        "database": InRequestThread(Database(alias="default")),
        "cache": Cache(alias="default", key_prefix="pjd-readyz"),
        "audit_writer": AuditWriter(),
    }


async def _run(checks: dict[str, HealthCheck]) -> list[HealthCheckResult]:
    return list(await asyncio.gather(*(check.get_result() for check in checks.values())))


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = _checks()
    results = async_to_sync(_run)(checks)
    failed = [name for name, result in zip(checks, results, strict=True) if result.error is not None]
    if failed:
        logger.warning("not ready: %s", ", ".join(failed))
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ready"})
