from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET


@require_GET
def hello(request: HttpRequest) -> HttpResponse:
    """Nothing but the middleware: with a session cookie it costs what the session costs
    (its read, the user's load, the activity stamp's write)."""

    return HttpResponse(b"hello\n", content_type="text/plain")
