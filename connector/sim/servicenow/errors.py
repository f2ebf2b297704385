"""ServiceNow's error answers: ``{"error": {"message", "detail"}, "status": "failure"}`` and the messages the
simulator repeats verbatim."""

from __future__ import annotations

from connector.sim.base import SimRequest, SimResponse

NO_RECORD_LIST = ("No Record found", "Records matching query not found. Check query parameter or offset parameter")
NO_RECORD_ID = ("No Record found", "Record doesn't exist or ACL restricts the record retrieval")
BAD_URI = ("Requested URI does not represent any resource", None)


def error(status: int, message: str, detail: str | None = "", headers: dict[str, str] | None = None) -> SimResponse:
    """An error response in ServiceNow's shape."""
    return SimResponse(status, {"error": {"message": message, "detail": detail}, "status": "failure"},
                       headers or {})


def not_supported(request: SimRequest) -> SimResponse:
    """The 405 of a method an API does not support."""
    return error(405, "Method not Supported", f"{request.method} method not supported for API")


def unknown_path(request: SimRequest) -> SimResponse:
    """An instance's answer to a path no API serves: 400, not 404."""
    return error(400, *BAD_URI)
