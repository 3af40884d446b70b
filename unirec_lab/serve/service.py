"""The HTTP service: FastAPI on uvicorn (ASGI). FastAPI because its pydantic request models turn every
malformed body into a 4xx with the field named, it runs on the standard ASGI stack (uvicorn), and it is the
common choice for Python model servers; nothing here is specific to it beyond the decorators.

Endpoints: ``POST /recommend``, ``POST /score``, ``POST /feedback``, ``POST /feedback/batch`` (up to
:data:`MAX_EVENTS` events in one request, for clients that buffer), ``GET /health``, ``GET /version`` and
``POST /admin/reload`` (loopback clients only). Every error is ``{"error": "<one line>"}`` with a 4xx status for
bad input (422 malformed or out of range, 404 unknown scenario / item, 413 body too large); a 500 would be a bug.

Concurrency: handlers that score run on the event loop (one model call at a time: on 2 cores, parallel torch
calls only contend) and read the current :class:`ServingState` once, so a hot-swap (a new state assigned to
``app.state.serving`` by the watcher or ``/admin/reload``, built in a worker thread) never changes a request
mid-way. ``/feedback`` waits for the group-commit writer: concurrent events are committed (fsynced) together
and each request is answered only after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from unirec_lab.serve.artifact import ArtifactError, current_version
from unirec_lab.serve.feedback import Event, FeedbackStore
from unirec_lab.serve.state import ServingState, UnknownId

log = logging.getLogger("unirec_lab.serve")

MAX_K = 1000
MAX_ITEMS = 1000
MAX_EVENTS = 1000
MAX_BODY_BYTES = 256 * 1024  # a full /feedback/batch is ~110 KB
ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
RawId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Scenario = Annotated[str, StringConstraints(min_length=1, max_length=100)]
LOOPBACK = {"127.0.0.1", "::1"}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class RecommendRequest(_Request):
    scenario: Scenario
    user: RawId
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True


class ScoreRequest(_Request):
    scenario: Scenario
    user: RawId
    items: list[RawId] = Field(min_length=1, max_length=MAX_ITEMS)


class FeedbackRequest(_Request):
    event_id: RawId | None = None
    scenario: Scenario
    user: RawId
    item: RawId
    label: float = Field(ge=0.0, le=1.0)
    ts: int | None = Field(None, ge=0, le=2**41)


class FeedbackBatch(_Request):
    events: list[FeedbackRequest] = Field(min_length=1, max_length=MAX_EVENTS)


class FeedbackWriter:
    """Group commit: one thread drains queued events into one transaction each round and then resolves every
    waiting request (so an acknowledged event is durable, and the fsync cost is shared)."""

    def __init__(self, store: FeedbackStore, max_batch: int = 4096) -> None:
        self.store, self.max_batch = store, max_batch
        self.queue: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="feedback-writer", daemon=True)
        self.thread.start()

    async def submit(self, event: Event) -> bool:
        return (await self.submit_many([event]))[0]

    async def submit_many(self, events: list[Event]) -> list[bool]:
        """Per event ``True`` when new; returns once all of them are committed."""
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in events]
        for e, fut in zip(events, futs):
            self.queue.put((e, loop, fut))
        return list(await asyncio.gather(*futs))

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)
                    break
                batch.append(nxt)
            try:
                fresh = self.store.append_many([e for e, _, _ in batch])
                results: list[Any] = fresh
            except Exception as e:  # noqa: BLE001 - every waiting request learns the commit failed
                log.error("feedback commit failed: %s", e)
                results = [e] * len(batch)
            for (_, loop, fut), res in zip(batch, results):
                loop.call_soon_threadsafe(_resolve, fut, res)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)


def _resolve(fut: asyncio.Future, res: Any) -> None:
    if fut.done():
        return
    if isinstance(res, Exception):
        fut.set_exception(res)
    else:
        fut.set_result(res)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` (declared, or counted while read when chunked) is
    answered 413 before the app sees it. The body (bounded) is read here and replayed to the app."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _reject(send, self.max_bytes)
            return
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client went away
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _reject(send, self.max_bytes)
                return
            if not msg.get("more_body"):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for a disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


async def _reject(send: Any, limit: int) -> None:
    body = f'{{"error": "request body larger than {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_line(exc: RequestValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    if err.get("type") == "json_invalid":
        return "body: not valid JSON"
    got = err.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {str(got)[:60]!r})"
    return f"{where}: {err.get('msg', 'invalid')}{shown}"


class Server:
    """The app's live parts: the current serving state, the artifact root it follows, the feedback writer."""

    def __init__(self, artifact: Path | str, store: FeedbackStore, candidates: int | None = None,
                 poll_seconds: float | None = 1.0) -> None:
        self.root, self.store, self.candidates = Path(artifact), store, candidates
        self.poll_seconds = poll_seconds
        self.serving = self._load()
        self.writer = FeedbackWriter(store)
        self.swap_lock = asyncio.Lock()
        self.started = time.time()
        self.last_reload_error: str | None = None
        self.refused: str | None = None  # a version that failed to load: the watcher skips it until CURRENT moves

    def _load(self) -> ServingState:
        t0 = time.perf_counter()
        probe = ServingState.load(self.root, self.candidates)
        events = self.store.events_since(probe.feedback_seq)
        for e in events:  # feedback logged since this version was made: history and seen items
            probe.observe(e)
        log.info("serving %s (%d feedback events replayed) in %.2fs", probe.version, len(events),
                 time.perf_counter() - t0)
        return probe

    async def reload(self, force: bool = False, retry_refused: bool = False) -> tuple[bool, str]:
        """Swap to the version ``CURRENT`` names if it changed (or ``force``); built in a worker thread. A
        version that failed to load is not retried by the watcher (``retry_refused``: ``/admin/reload`` does)."""
        async with self.swap_lock:
            try:
                target = current_version(self.root) if (self.root / "CURRENT").exists() else self.serving.version
            except ArtifactError as e:
                self.last_reload_error = str(e)
                return False, str(e)
            if target == self.serving.version and not force:
                return False, target
            if target == self.refused and not retry_refused:
                return False, self.last_reload_error or target
            try:
                new = await asyncio.to_thread(self._load)
            except (ArtifactError, ValueError, OSError) as e:
                self.last_reload_error, self.refused = str(e).splitlines()[0], target
                log.error("reload refused: %s", self.last_reload_error)
                return False, self.last_reload_error
            self.serving = new  # one reference assignment: requests that hold the old state finish on it
            self.last_reload_error = self.refused = None
            return True, new.version

    async def watch(self) -> None:
        while self.poll_seconds:
            await asyncio.sleep(self.poll_seconds)
            with contextlib.suppress(Exception):
                await self.reload()


def create_app(server: Server) -> Any:
    """The ASGI app (FastAPI wrapped in the body-size limit)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(server.watch()) if server.poll_seconds else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            server.writer.close()

    app = FastAPI(title="unirec-serve", lifespan=lifespan)
    app.state.server = server

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_line(exc))

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error: {type(exc).__name__}")

    def scenario_of(state: ServingState, name: str) -> JSONResponse | None:
        if name not in state.artifact.scenarios:
            return _error(404, f"scenario {name!r} is not served; served: {sorted(state.artifact.scenarios)}")
        return None

    @app.post("/recommend")
    async def recommend(req: RecommendRequest) -> Any:
        state = server.serving
        if (bad := scenario_of(state, req.scenario)) is not None:
            return bad
        items, scores, fallback = state.recommend(req.scenario, req.user, req.k, req.exclude_seen)
        return {"scenario": req.scenario, "user": req.user, "version": state.version, "fallback": fallback,
                "items": [{"item": i, "score": s} for i, s in zip(items, scores)]}

    @app.post("/score")
    async def score(req: ScoreRequest) -> Any:
        state = server.serving
        if (bad := scenario_of(state, req.scenario)) is not None:
            return bad
        try:
            scores, fallback = state.score(req.scenario, req.user, req.items)
        except UnknownId as e:
            return _error(404, str(e))
        return {"scenario": req.scenario, "user": req.user, "version": state.version, "fallback": fallback,
                "scores": [{"item": i, "score": s} for i, s in zip(req.items, scores)]}

    async def store_events(reqs: list[FeedbackRequest]) -> tuple[list[Event], list[bool]] | JSONResponse:
        state = server.serving
        for req in reqs:
            if (bad := scenario_of(state, req.scenario)) is not None:
                return bad
        now = int(time.time())
        events = [Event(r.scenario, r.user, r.item, r.label, now if r.ts is None else r.ts, r.event_id or ""
                        ).with_id() for r in reqs]
        try:
            fresh = await server.writer.submit_many(events)
        except Exception as e:  # noqa: BLE001 - the store is down: not acknowledged, the client retries
            return _error(503, f"feedback store unavailable ({type(e).__name__}); retry with the same event_id")
        for e, new in zip(events, fresh):
            if new:
                server.serving.observe(e)
        return events, fresh

    @app.post("/feedback")
    async def feedback(req: FeedbackRequest) -> Any:
        out = await store_events([req])
        if isinstance(out, JSONResponse):
            return out
        (event,), (fresh,) = out
        return {"event_id": event.event_id, "stored": True, "duplicate": not fresh}

    @app.post("/feedback/batch")
    async def feedback_batch(req: FeedbackBatch) -> Any:
        out = await store_events(req.events)
        if isinstance(out, JSONResponse):
            return out
        events, fresh = out
        return {"stored": len(events), "duplicates": [e.event_id for e, f in zip(events, fresh) if not f]}

    @app.get("/health")
    async def health() -> Any:
        state = server.serving
        return {"status": "ok", "version": state.version, "scenarios": sorted(state.artifact.scenarios),
                "uptime_s": round(time.time() - server.started, 1), "feedback": server.store.settings(),
                "last_reload_error": server.last_reload_error}

    @app.get("/version")
    async def version() -> Any:
        state = server.serving
        info = state.artifact.info
        return {"version": state.version, "artifact": str(server.root), "loaded_at": state.loaded_at,
                "source_run": info.get("source_run"), "parent": info.get("parent"),
                "feedback_seq": state.feedback_seq, "candidates": server.candidates,
                "models": {s: sc.model for s, sc in state.artifact.scenarios.items()}}

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> Any:
        host = request.client.host if request.client else ""
        if host not in LOOPBACK:
            return _error(403, f"/admin/reload is accepted from loopback clients only (got {host})")
        swapped, detail = await server.reload(retry_refused=True)
        if not swapped and detail != server.serving.version:
            return _error(409, f"reload refused: {detail}")
        return {"swapped": swapped, "version": server.serving.version}

    return BodyLimit(app)
