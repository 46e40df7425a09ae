"""`POST /admin/reload`: load the model file again and swap it in, without a restart.

Atomic by construction: every request takes the state's `engine` once (service.deps) and
keeps that object to the end, and engines are never changed after they are built. The new
engine is loaded and checked in a worker thread (the event loop keeps serving), then one
attribute assignment swaps it in: requests in flight finish on the old engine (freed when
the last of them drops it), requests that start after the swap get the new one. A file
that does not load leaves the old engine serving and answers 422.

The file reloaded is the configured `STYLEBOX_MODEL_PATH` (with `?model=NAME`, that
`STYLEBOX_EXTRA_MODELS` model's file); replace it atomically first
(`stylebox export ... -o m.onnx.new && mv m.onnx.new m.onnx`). Access: with
`STYLEBOX_API_KEY` set the key is required (401 otherwise); with no key the endpoint is
refused (403) unless `STYLEBOX_ALLOW_ADMIN_WITHOUT_KEY=true`.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from stylebox.service.deps import MODEL_QUERY, known_model
from stylebox.service.engine import Engine, ModelLoadError
from stylebox.service.http.access import Access, guard
from stylebox.service.http.auth import REALM, key_digest, key_matches, presented_keys
from stylebox.service.http.errors import AdminDisabledError, ModelReloadError
from stylebox.service.modelwatch import reload
from stylebox.service.settings import DEFAULT_MODEL
from stylebox.service.state import StateDep

log = logging.getLogger("stylebox.service")
router = APIRouter(tags=["admin"], dependencies=[guard(Access.KEYED)])
_PROBLEM = {"content": {"application/problem+json": {}}}


def require_admin(request: Request, state: StateDep) -> None:
    settings = state.settings
    key = settings.api_key
    if key is None:
        if not settings.allow_admin_without_key:
            raise AdminDisabledError(
                "admin endpoints need an API key: set STYLEBOX_API_KEY (or, on a trusted "
                "network only, STYLEBOX_ALLOW_ADMIN_WITHOUT_KEY=true)")
        return
    # The router's guard has already turned away a missing or wrong key; checking again here
    # keeps admin closed even if the router were ever declared open.
    if not key_matches(presented_keys(request.scope), key_digest(key.get_secret_value())):
        raise HTTPException(401, "this endpoint needs the API key",
                            headers={"WWW-Authenticate": REALM})


class ModelInfo(BaseModel):
    name: str
    version: str
    alpha: float
    styles: list[str]

    @classmethod
    def of(cls, engine: Engine) -> ModelInfo:
        c = engine.card
        return cls(name=c.name, version=c.version, alpha=c.alpha, styles=c.style_names)


class ReloadResult(BaseModel):
    status: str
    name: str = DEFAULT_MODEL  # which served model (?model=NAME)
    path: str
    model: ModelInfo
    previous: ModelInfo | None
    load_ms: float


@router.post(
    "/admin/reload",
    summary="Reload the model file without a restart",
    responses={
        401: {"description": "API key missing or wrong", **_PROBLEM},
        403: {"description": "no API key configured and admin not enabled", **_PROBLEM},
        404: {"description": "unknown model (the body lists the served ones)", **_PROBLEM},
        422: {"description": "the file does not load; the old model keeps serving",
              **_PROBLEM},
    },
)
async def reload_model(state: StateDep,
                       _: Annotated[None, Depends(require_admin)],
                       model: Annotated[str | None, Query(description=MODEL_QUERY)] = None
                       ) -> ReloadResult:
    name = known_model(state, DEFAULT_MODEL if model is None else model)
    try:
        old, new, ms = await reload(state, name)
    except ModelLoadError as e:
        old = state.engines.get(name)
        kept = f"; still serving {old.card.name}@{old.card.version}" if old else ""
        raise ModelReloadError(f"{e}{kept}") from None
    log.info("reloaded %s: %s@%s -> %s@%s in %.0f ms", new.path,
             old.card.name if old else "-", old.card.version if old else "-",
             new.card.name, new.card.version, ms)
    return ReloadResult(status="reloaded", name=name, path=str(new.path),
                        model=ModelInfo.of(new), previous=ModelInfo.of(old) if old else None,
                        load_ms=round(ms, 1))

