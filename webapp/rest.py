"""The REST API beside the UI: ``POST /api/v1/classify`` and ``POST /api/v1/retrieve``, plain
FastAPI routes on the same server as the Gradio app (they skip Gradio's queue, not its limits).

Each route takes a multipart upload, hands the bytes to the same ``Service`` call and decoder as
the UI and ``gradio_client``, and answers the same JSON shapes. Errors are JSON
``{"detail": message}`` with the decoder's own message: 400 for a bad image or field, 404 for an
unknown model set, 411 without a Content-Length, 413 for a too-large image, 429 when
``config.REST_MAX_INFLIGHT`` requests are already being answered, 503 when the retrieval engine
is down. The OpenAPI schema is at ``/api/v1/openapi.json``, its page (offline) at ``/api/v1/docs``.
"""
from __future__ import annotations

import contextlib
import html
import json
import threading

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from cvdemo import config
from cvdemo.service import SHIPPED, CheckpointError, ImageError, MilvusError, Service, TooLargeError, too_large

PREFIX = "/api/v1"
MULTIPART_SLACK = 64 * 1024          # the form's own bytes around the image


def _form_body(fields: dict) -> dict:
    """An OpenAPI multipart request body with a required binary ``image`` and ``fields``."""
    properties = {"image": {"type": "string", "format": "binary", "description": "the image file (PNG, JPEG, WEBP, "
                            "GIF or BMP), sent as a file: a path or text is refused"}, **fields}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["image"], "properties": properties}}}}}


ERRORS = {
    400: {"description": "not an image, a broken one, a path instead of a file, or a bad field"},
    404: {"description": "no such model set"},
    411: {"description": "the request has no Content-Length"},
    413: {"description": f"the image is over {config.MAX_IMAGE_BYTES // (1024 * 1024)} MB or "
                         f"{config.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"},
    429: {"description": "the server is answering as many requests as it takes: retry after a second"},
}
EXAMPLES = {
    "classify": {"scratch": {"label": "2", "probabilities": {"0": 0.001, "1": 0.004, "2": 0.995}, "known": True,
                             "novelty": 0.41, "runtime": "litert", "looks_like": None}},
    "retrieve": {"results": [{"rank": 1, "path": "2/2_17.png", "label": "2", "distance": 0.84}],
                 "extractor": "cnn", "backend": "numpy", "ms": 3.1,
                 "agreement": {"majority": "2", "votes": 4, "hits": 4, "said": {"scratch": "2"}, "agree": True}},
}


class Rest:
    """The routes over one service; ``routes`` go to Gradio's FastAPI app (``launch``)."""

    def __init__(self, service: Service, max_inflight: int = config.REST_MAX_INFLIGHT):
        self.service = service
        self.max_inflight = max_inflight
        self._inflight = 0
        self._lock = threading.Lock()
        self.router = APIRouter(prefix=PREFIX, tags=["cvdemo"])
        self.router.add_api_route(
            "/classify", self.classify, methods=["POST"], summary="Classify one image with every model of a set",
            description="Every model's label, class probabilities, novelty verdict and runtime: the shape of "
                        "gradio_client's /classify.", responses={200: {"content": {"application/json": {
                            "example": EXAMPLES["classify"]}}}, **ERRORS},
            openapi_extra=_form_body({"model_set": {"type": "string", "default": SHIPPED,
                                                    "description": "a model set id (/list_model_sets)"}}))
        self.router.add_api_route(
            "/retrieve", self.retrieve, methods=["POST"], summary="The k database images nearest to one image",
            description="Rank, path, class and Euclidean distance of each hit, and how the hits' classes agree "
                        "with the classifiers: the table of gradio_client's /retrieve.",
            responses={200: {"content": {"application/json": {"example": EXAMPLES["retrieve"]}}}, **ERRORS,
                       503: {"description": "the retrieval engine is unavailable"}},
            openapi_extra=_form_body({"k": {"type": "integer", "default": 4, "minimum": 1,
                                            "maximum": service.limits.max_k},
                                      "model_set": {"type": "string", "default": SHIPPED}}))
        self.router.add_api_route("/openapi.json", self.openapi, methods=["GET"], include_in_schema=False)
        self.router.add_api_route("/docs", self.docs, methods=["GET"], include_in_schema=False)

    @property
    def routes(self) -> list:
        return list(self.router.routes)

    # ------------------------------------------------------------------ the routes
    async def classify(self, request: Request) -> dict:
        with self._admitted():
            data, name, fields = await self._upload(request, ("model_set",))
            result = await run_in_threadpool(self._answer, self.service.classify, data,
                                             set_id=fields.get("model_set") or SHIPPED, name=name)
            return result.as_dict()

    async def retrieve(self, request: Request) -> dict:
        with self._admitted():
            data, name, fields = await self._upload(request, ("k", "model_set"))
            answer, agreement = await run_in_threadpool(
                self._answer, self.service.retrieve_compared, data, fields.get("k") or 4,
                set_id=fields.get("model_set") or SHIPPED, name=name)
            return {"results": answer.as_list(), "extractor": answer.extractor, "backend": answer.backend,
                    "ms": round(answer.ms, 2), "agreement": {
                        "majority": agreement.majority, "votes": agreement.votes, "hits": agreement.hits,
                        "said": agreement.said, "agree": agreement.agree if agreement.classified else None}}

    def openapi(self) -> dict:
        return get_openapi(title="cvdemo REST API", version="1", routes=self.routes,
                           description="Classification and retrieval of handwritten digits, beside the "
                                       "Gradio app on the same server.")

    def docs(self, request: Request) -> HTMLResponse:
        return HTMLResponse(docs_page(self.openapi(), str(request.base_url).rstrip("/")))

    # ------------------------------------------------------------------ the checks
    @contextlib.contextmanager
    def _admitted(self):
        with self._lock:
            if self._inflight >= self.max_inflight:
                raise HTTPException(429, "The server is busy: too many requests at once. Retry in a second.",
                                    headers={"Retry-After": "1"})
            self._inflight += 1
        try:
            yield
        finally:
            with self._lock:
                self._inflight -= 1

    @staticmethod
    async def _upload(request: Request, allowed: tuple[str, ...]) -> tuple[bytes, str, dict]:
        """(image bytes, its name, the other fields) of a multipart request, within the limits."""
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(411, "Send the request with a Content-Length (curl -F does).")
        if not length.isdigit():
            raise HTTPException(400, "The Content-Length is not a number.")
        if int(length) > config.MAX_IMAGE_BYTES + MULTIPART_SLACK:
            raise HTTPException(413, str(too_large("The upload")))
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(400, "Send a multipart/form-data request with the image in the field 'image' "
                                     "(curl -F image=@digit.png).")
        try:
            form = await request.form(max_files=1, max_fields=len(allowed) + 1, max_part_size=1024)
        except HTTPException as err:
            raise HTTPException(400, f"The form could not be read: {err.detail}") from None
        except Exception:   # noqa: BLE001 - a malformed body is the sender's mistake
            raise HTTPException(400, "The form could not be read as multipart/form-data.") from None
        unknown = sorted(set(form) - {"image", *allowed})
        if unknown:
            raise HTTPException(400, f"Unknown field {unknown[0]!r}; this route takes image, {', '.join(allowed)}.")
        image = form.get("image")
        if image is None:
            raise HTTPException(400, "No image: send the file in the field 'image' (curl -F image=@digit.png).")
        if not isinstance(image, UploadFile):
            raise HTTPException(400, "The field 'image' must be a file upload, not text or a path "
                                     "(curl -F image=@digit.png, with the @).")
        data = await image.read(config.MAX_IMAGE_BYTES + 1)
        name = (image.filename or "The image")[:100]
        fields = {key: form[key] for key in allowed if isinstance(form.get(key), str)}
        return data, name, fields

    @staticmethod
    def _answer(call, *args, **kwargs):
        """``call`` with its errors as the HTTP errors of this API (run in a worker thread)."""
        try:
            return call(*args, **kwargs)
        except TooLargeError as err:
            raise HTTPException(413, str(err)) from None
        except (ImageError, ValueError) as err:
            raise HTTPException(400, str(err)) from None
        except (KeyError, CheckpointError):
            raise HTTPException(404, f"No model set {kwargs.get('set_id')!r}: see /list_model_sets.") from None
        except MilvusError as err:
            raise HTTPException(503, str(err)) from None


def docs_page(schema: dict, base: str = "http://127.0.0.1:7860") -> str:
    """The OpenAPI schema as one self-contained page (Swagger UI would load its scripts from a CDN)."""
    parts = [f"<h1>{html.escape(schema['info']['title'])}</h1><p>{html.escape(schema['info'].get('description', ''))}"
             f" The schema: <a href='{PREFIX}/openapi.json'>{PREFIX}/openapi.json</a>.</p>"]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema", {})
            rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v.get('type', ''))}"
                           f"{' (required)' if k in body.get('required', []) else ''}</td>"
                           f"<td>{html.escape(str(v.get('description', v.get('default', ''))))}</td></tr>"
                           for k, v in body.get("properties", {}).items())
            answers = "".join(f"<li><b>{code}</b> {html.escape(r.get('description', ''))}</li>"
                              for code, r in op.get("responses", {}).items())
            example = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
            curl = f"curl -F image=@digit.png {base}{path}"
            parts.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2><p>{html.escape(op['summary'])}. "
                         f"{html.escape(op.get('description', ''))}</p><table><tr><th>field</th><th>type</th>"
                         f"<th></th></tr>{rows}</table><pre>{html.escape(curl)}</pre><ul>{answers}</ul>"
                         + (f"<pre>{html.escape(json.dumps(example.get('example'), indent=1))}</pre>"
                            if example.get("example") else ""))
    style = ("body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
             "pre{background:#f3f3f6;padding:.6rem;overflow-x:auto}td,th{padding:.2rem .6rem;text-align:left}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width'><title>cvdemo REST API</title><style>{style}</style></head><body>"
            + "".join(parts) + "</body></html>")
