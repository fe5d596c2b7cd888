from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class RejectNulMiddleware:
    """A NUL character in a query parameter is refused up front: PostgreSQL cannot compare
    text containing one, so a filter would otherwise surface it as a server error. (Form
    fields refuse NUL themselves.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        # The API validates each parameter itself and documents its answers.
        if not request.path.startswith("/api/") and ("%00" in query or "\x00" in query):
            return HttpResponseBadRequest("Parameters must not contain the NUL character.")
        return self.get_response(request)
