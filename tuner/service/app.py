"""The server's ASGI app: the JSON API under ``/api/v1`` (OpenAPI at ``/openapi.json``, pages
at ``/docs``), optuna-dashboard's own WSGI app mounted at the root (``/dashboard/``), a login
page, and ``/healthz`` for probes.

Every request but ``/healthz`` and the login page needs the server's token: an
``Authorization: Bearer TOKEN`` header, or the cookie the login page sets. A wrong or missing
token is a 401 (a browser asking for a page is sent to the login page), and nothing is done.
Request bodies are capped (:data:`MAX_BODY`). A submitted study file is data, never code:
it may name only an allowed objective (:func:`check_submitted`) and files under the data root.
"""

from __future__ import annotations

import hmac
import html
import logging
import tomllib
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from optuna.storages import BaseStorage
from pydantic import BaseModel, ConfigDict, Field

from tuner.core.errors import StudyNotFoundError, TunerError
from tuner.core.version import __version__
from tuner.run.config import config_from_dict
from tuner.service import queue as rules
from tuner.service.allow import NotAllowed, check_submitted
from tuner.service.submit import submit as submit_study
from tuner.store.queue import find_queued, pool_workers
from tuner.store.snapshot import study_metrics
from tuner.store.studies import best_trial, pareto_set
from tuner.views.summaries import trial_record

log = logging.getLogger("tuner")

MAX_BODY = 1 << 20  # bytes: a study file is a few hundred
MAX_STUDY_FILE = 256 * 1024  # characters of a submitted study file
COOKIE = "tuner_token"
OPEN_PATHS = ("/healthz", "/login")  # served without the token

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


EXAMPLE_STUDY = """[study]
name = "iris-example"
n_trials = 4

[objective]
name = "classifier"
dataset = "iris"
epochs = 2

[space]
lr = { low = 1e-3, high = 0.1 }
batch_size = { low = 16, high = 32 }
init = ["xavier_uniform", "kaiming_normal"]
"""


class SubmitRequest(BaseModel):
    """A study file's text to check, store and queue."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={
        "examples": [{"study_file": EXAMPLE_STUDY, "priority": 0}]})

    study_file: str = Field(..., max_length=MAX_STUDY_FILE,
                            description="The study file (TOML) as text.")
    priority: int = Field(0, ge=-(2**31), le=2**31 - 1, description="Higher runs first.")
    max_parallel: int | None = Field(None, ge=1, le=100_000,
                                     description="At most this many of its trials at once.")
    name: str | None = Field(None, max_length=128,
                             description="Study name (default: [study] name).")
    n_trials: int | None = Field(None, ge=1, le=10_000_000, description="Budget of trials.")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Study seed.")


class ResumeRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    n_trials: int = Field(..., ge=1, le=10_000_000, description="How many more trials to queue.")


class StudyRow(BaseModel):
    """A submitted study as the queue sees it."""

    name: str
    state: str
    priority: int
    max_parallel: int | None
    finished: int
    budget: int | None
    running: int
    workers: list[str]
    metric: str | list[str]
    direction: str | list[str]
    best: float | None
    eta_s: float | None
    reason: str | None
    blocked: dict[str, str] = Field(default_factory=dict,
                                    description="Live workers that cannot serve it, and why.")
    cancelled_trials: int | None = None


class WorkerRow(BaseModel):
    id: str
    host: str
    pid: int
    device: str | None
    study: str | None
    trial: int | None
    blocked: dict[str, str] = Field(default_factory=dict,
                                    description="Studies it cannot serve, and why.")
    last_heartbeat_s_ago: float


class QueueView(BaseModel):
    studies: list[StudyRow]
    workers: list[WorkerRow]


class Trial(BaseModel):
    number: int
    state: str
    value: float | None
    values: dict[str, float | None] | None = None
    params: dict[str, Any]
    datetime_start: str | None
    datetime_complete: str | None
    duration_s: float | None
    last_step: int | None
    user_attrs: dict[str, Any]


class Best(BaseModel):
    """The best trial of a study with one metric, or the Pareto set of one with several."""

    metrics: list[str]
    trials: list[Trial]


class Problem(BaseModel):
    detail: str


class Invalid(BaseModel):
    """A request the server cannot take: the study file's own error line, or the fields that
    do not fit the schema (FastAPI's list)."""

    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON."},
    401: {"model": Problem, "description": "Missing or wrong token."},
    403: {"model": Problem, "description": "An objective or a file the server does not allow."},
    404: {"model": Problem, "description": "No such study in the queue."},
    409: {"model": Problem, "description": "A change the study's state does not allow."},
    422: {"model": Invalid, "description": "Bad input: the study file, a name, a value."},
    413: {"model": Problem, "description": "The request body is too large."},
}


def create_app(storage: BaseStorage, *, token: str, storage_url: str,
               allow_objectives: list[str] | tuple[str, ...] = (), data_root: Path | None = None,
               dashboard: Callable[..., Any] | None = None, max_body: int = MAX_BODY) -> ASGIApp:
    """The server's app over ``storage`` (opened from ``storage_url``). ``dashboard``:
    optuna-dashboard's WSGI app, mounted at the root (``None``: no dashboard)."""
    api = FastAPI(title="tuner", version=__version__, responses=ERRORS,
                  description="The queue of studies of a tuner storage, and its pool of workers. "
                  "Every request needs `Authorization: Bearer TOKEN`.")

    def call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except StudyNotFoundError as e:
            raise HTTPException(404, str(e)) from None
        except NotAllowed as e:
            raise HTTPException(403, str(e)) from None
        except rules.StateError as e:
            raise HTTPException(409, str(e)) from None
        except TunerError as e:  # a bad study file, name or value: the CLI's one error line
            raise HTTPException(422, str(e)) from None

    @api.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/api/v1/studies", response_model=QueueView, summary="The queue and the pool")
    def list_studies() -> Any:
        return call(lambda: rules.queue_view(storage))

    @api.post("/api/v1/studies", response_model=StudyRow, status_code=201,
              summary="Check, store and queue a study file")
    def submit(request: SubmitRequest) -> Any:
        def go() -> Any:
            raw = _parse(request.study_file)
            check_submitted(raw, allow_objectives, data_root)
            study = raw.setdefault("study", {})
            if not isinstance(study, dict):
                raise TunerError("[study] must be a table")
            study.update({k: v for k, v in (("name", request.name), ("n_trials", request.n_trials),
                                            ("seed", request.seed)) if v is not None})
            if "name" not in study:
                raise TunerError("the study needs a name: [study] name, or name in the request")
            source = str((data_root or Path.cwd()) / f"{study['name']}.toml")
            config = config_from_dict(raw, source)
            return rules.as_row(submit_study(config, storage_url, priority=request.priority,
                                             max_parallel=request.max_parallel))

        return call(go)

    @api.get("/api/v1/studies/{name}", response_model=StudyRow, summary="One submitted study")
    def show(name: str) -> Any:
        return call(lambda: rules.as_row(rules.describe(storage, name)))

    @api.get("/api/v1/studies/{name}/trials", response_model=list[Trial],
             summary="A submitted study's trials")
    def trials(name: str) -> Any:
        def go() -> Any:
            study, _ = find_queued(storage, name)
            metrics = study_metrics(study)
            return [trial_record(t, metrics) for t in study.get_trials(deepcopy=False)]

        return call(go)

    @api.get("/api/v1/studies/{name}/best", response_model=Best,
             summary="Its best trial (one metric) or Pareto set (several)")
    def best(name: str) -> Any:
        def go() -> Any:
            study, _ = find_queued(storage, name)
            metrics = study_metrics(study)
            if len(study.directions) > 1:
                chosen = pareto_set(study)
            else:
                one = best_trial(study)
                chosen = [] if one is None else [one]
            return {"metrics": metrics, "trials": [trial_record(t, metrics) for t in chosen]}

        return call(go)

    for action in ("pause", "unpause", "cancel"):
        api.post(f"/api/v1/studies/{{name}}/{action}", response_model=StudyRow,
                 summary=f"{action.capitalize()} a study")(_action(action, storage, call))

    @api.post("/api/v1/studies/{name}/resume", response_model=StudyRow,
              summary="Queue more trials of a study")
    def resume(name: str, request: ResumeRequest = Body(...)) -> Any:  # noqa: B008
        return call(lambda: rules.act(storage, "resume", name, n_trials=request.n_trials))

    @api.get("/api/v1/workers", response_model=list[WorkerRow],
             summary="The pool's workers, with their last heartbeat")
    def workers() -> Any:
        return [rules.worker_row(w) for w in pool_workers(storage)]

    @api.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(next: str = "/dashboard/", wrong: int = 0) -> Any:
        return HTMLResponse(_login_html(_safe_next(next), bool(wrong)))

    @api.post("/login", include_in_schema=False)
    async def login(request: Request) -> Any:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        target = _safe_next((form.get("next") or ["/dashboard/"])[0])
        if not hmac.compare_digest(given.encode(), token.encode()):
            return RedirectResponse(f"/login?wrong=1&next={quote(target)}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    if dashboard is not None:
        from a2wsgi import WSGIMiddleware

        api.mount("/", _not_ours(api, WSGIMiddleware(dashboard)))
    return guarded(api, token, max_body)


def _not_ours(api: FastAPI, dashboard: ASGIApp) -> ASGIApp:
    """The dashboard, for every path but this API's own: a path under ``/api/v1`` that reached
    it has no route of the API (404) or not with this method (405)."""
    from starlette.routing import Match

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/api/v1"):
            await dashboard(scope, receive, send)
            return
        methods = {m for route in api.router.routes
                   if getattr(route, "path", "").startswith("/api/v1")
                   and route.matches(scope)[0] is not Match.NONE
                   for m in getattr(route, "methods", ())}
        if methods:
            await _problem(send, 405, f"method {scope.get('method')} is not allowed here",
                           [(b"allow", ", ".join(sorted(methods)).encode())])
            return
        await _problem(send, 404, f"no such API path: {scope.get('path')}")

    return app


def _action(action: str, storage: BaseStorage, call: Callable[[Callable[[], Any]], Any]
            ) -> Callable[[str], Any]:
    def endpoint(name: str) -> Any:
        return call(lambda: rules.act(storage, action, name))

    endpoint.__name__ = action
    return endpoint


def _parse(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TunerError(f"study file: invalid TOML: {e}") from None


def _safe_next(target: str) -> str:
    """Where the login page may send a browser: a path of this server, never another site."""
    return target if target.startswith("/") and not target.startswith("//") \
        and "\\" not in target else "/dashboard/"


def _login_html(target: str, wrong: bool) -> str:
    note = '<p class="wrong">That token is wrong.</p>' if wrong else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tuner: sign in
</title><style>body{{font-family:sans-serif;max-width:28em;margin:4em auto}}input{{width:100%;
padding:.4em;margin:.4em 0}}.wrong{{color:#b00}}</style></head><body><h1>tuner</h1>
<p>This server needs its API token. <code>tuner serve</code> printed where it is.</p>{note}
<form method="post" action="/login"><input type="hidden" name="next" value="{html.escape(target)}">
<label>Token <input type="password" name="token" autofocus autocomplete="current-password">
</label><input type="submit" value="Sign in"></form></body></html>"""


def guarded(app: ASGIApp, token: str, max_body: int) -> ASGIApp:
    """``app`` behind the token check and the body cap (pure ASGI, so the dashboard's mounted
    WSGI app is behind them too)."""
    secret = token.encode()

    def authorised(scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"")
        if given[:7].lower() == b"bearer " and hmac.compare_digest(given[7:].strip(), secret):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            key, _, value = part.strip().partition(b"=")
            if key == COOKIE.encode() and hmac.compare_digest(value, secret):
                return True
        return False

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path not in OPEN_PATHS and not authorised(scope):
            await _refuse(scope, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            await _problem(send, 413, f"the request body is over {max_body} bytes")
            return
        seen = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, capped_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _problem(send, 413, f"the request body is over {max_body} bytes")

    return guard


class _TooLarge(Exception):
    pass


async def _refuse(scope: Scope, send: Send) -> None:
    headers = dict(scope.get("headers") or [])
    wants_page = (scope.get("method") == "GET" and b"text/html" in headers.get(b"accept", b"")
                  and not scope.get("path", "").startswith("/api/"))
    if wants_page:
        target = scope.get("path", "/")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", f"/login?next={quote(target)}".encode())]})
        await send({"type": "http.response.body", "body": b""})
        return
    await _problem(send, 401, "missing or wrong token: send Authorization: Bearer TOKEN "
                   "(tuner serve printed where its token is)",
                   [(b"www-authenticate", b"Bearer")])


async def _problem(send: Send, status: int, detail: str,
                   headers: list[tuple[bytes, bytes]] | None = None) -> None:
    response = JSONResponse({"detail": detail}, status_code=status)
    await send({"type": "http.response.start", "status": status,
                "headers": [*response.raw_headers, *(headers or [])]})
    await send({"type": "http.response.body", "body": response.body})
