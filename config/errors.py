from django.http import JsonResponse
from django.views.defaults import page_not_found


def not_found(request, exception):
    """An unknown URL under /api/ (e.g. a malformed id in the path) answers JSON, as every
    other API error does, instead of the HTML page people see."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
