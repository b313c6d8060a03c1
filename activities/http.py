"""The HTTP built-in: Step Functions' HTTP Task (``arn:aws:states:::http:invoke``) run locally.

The Task's effective input carries ApiEndpoint, Method, Headers,
QueryParameters and RequestBody as AWS's HTTP Task takes them; the result
is ``{"StatusCode", "StatusText", "Headers", "ResponseBody"}``. A non-2xx
answer fails the Task with ``States.Http.StatusCode.<code>`` and a
connection failure or timeout with ``States.Http.Socket``; retrying is left
to the definition's Retry. The call honours the Task's deadline and sends
the context's ``traceparent``. Standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from http.client import HTTPResponse, responses
from typing import Any

from activities.registry import ActivityContext, ActivityError

__all__ = ["HTTP_RESOURCE", "http_invoke"]

HTTP_RESOURCE = "arn:aws:states:::http:invoke"
_DEFAULT_TIMEOUT = 60.0


def _query(parameters: Any) -> str:
    if not parameters:
        return ""
    if not isinstance(parameters, dict):
        raise ActivityError("States.Runtime", "QueryParameters must be a JSON object.")
    pairs: list[tuple[str, str]] = []
    for name, value in parameters.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = item if isinstance(item, str) else json.dumps(item)
            pairs.append((str(name), text))
    return urllib.parse.urlencode(pairs)


def _body(input: dict[str, Any], headers: dict[str, str]) -> bytes | None:
    if "RequestBody" not in input or input["RequestBody"] is None:
        return None
    body = input["RequestBody"]
    encoding = (input.get("Transform") or {}).get("RequestBodyEncoding", "NONE")
    if encoding == "URL_ENCODED" and isinstance(body, dict):
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return _query(body).encode()
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode()


def _result(response: HTTPResponse | urllib.error.HTTPError) -> dict[str, Any]:
    raw = response.read()
    text = raw.decode("utf-8", errors="replace")
    content_type = response.headers.get("Content-Type", "")
    body: Any = text
    if "json" in content_type:
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    status = int(response.status or 0)
    return {
        "StatusCode": status,
        "StatusText": response.reason or responses.get(status, ""),
        "Headers": headers,
        "ResponseBody": body,
    }


def http_invoke(input: Any, context: ActivityContext) -> dict[str, Any]:
    """Make the request the input describes and return AWS's HTTP Task result.

    Raises ActivityError: ``States.Http.StatusCode.<n>`` for a non-2xx status
    (cause: the result as JSON), ``States.Http.Socket`` when the server cannot
    be reached or does not answer in time, ``States.Runtime`` for a malformed input.
    """
    if not isinstance(input, dict) or not isinstance(input.get("ApiEndpoint"), str):
        raise ActivityError("States.Runtime", "The HTTP Task needs an ApiEndpoint string.")
    method = str(input.get("Method", "GET")).upper()
    raw_headers = input.get("Headers") or {}
    if not isinstance(raw_headers, dict):
        raise ActivityError("States.Runtime", "Headers must be a JSON object.")
    headers = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_headers.items()}
    url = input["ApiEndpoint"]
    query = _query(input.get("QueryParameters"))
    if query:
        url = f"{url}{'&' if '?' in url else '?'}{query}"
    body = _body(input, headers)
    if context.traceparent:
        headers.setdefault("traceparent", context.traceparent)
    headers.setdefault("User-Agent", "Stepwise-HTTP-Task")
    timeout = _DEFAULT_TIMEOUT
    if context.deadline is not None:
        timeout = max(0.1, (context.deadline - datetime.now(UTC)).total_seconds())
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result = _result(response)
    except urllib.error.HTTPError as failure:
        result = _result(failure)
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as failure:
        reason = getattr(failure, "reason", failure)
        raise ActivityError("States.Http.Socket", f"{type(reason).__name__}: {reason}") from None
    if not 200 <= result["StatusCode"] < 300:
        raise ActivityError(f"States.Http.StatusCode.{result['StatusCode']}", json.dumps(result))
    return result
