"""The service's state: one typed object per app, made by the app factory, read through
dependencies.

`create_app` builds a `ServiceState` from the settings (and the engine `stylebox serve` loaded
up front, if any) and stores it as `app.state.stylebox`; nothing else is kept on `app.state`,
and no layer makes a piece of it as a side effect. Routes and dependencies take it as a
parameter, `state: StateDep` (or one field through `get_engine`, `get_settings` in
service/deps.py); code that has no request to depend on (the lifespan, the shutdown signal
handler, the exception handlers, the metrics of a refused WebSocket handshake) uses
`state_of(app)`.

The engines are the one field that changes while the app serves: one per served model, by
name (service/models.py; `engine` is the `default` one, MODEL_PATH's). The lifespan loads
them (those `stylebox serve` did not) and drops them on shutdown, and `POST /admin/reload`
swaps one with one assignment (as does the model watcher, service/modelwatch.py, when its
file is replaced); every request reads its engine once and keeps that object to its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from anyio import CapacityLimiter, Lock
from fastapi import Depends
from starlette.requests import HTTPConnection

from stylebox.service.models import choose_live
from stylebox.service.settings import DEFAULT_MODEL, Settings

if TYPE_CHECKING:  # the state holds them; they import this module for `state_of`
    from stylebox.service.engine import Engine
    from stylebox.service.http.admission import Admission
    from stylebox.service.http.metrics import Metrics
    from stylebox.service.jobs import VideoJobs
    from stylebox.service.previews import PreviewCache
    from stylebox.service.trainer import TrainerJobs

@dataclass(eq=False)
class ServiceState:
    settings: Settings
    # The served models by name; one is missing until the lifespan has loaded it, and every
    # one once shutdown starts. Replaced by name, never changed in place.
    engines: dict[str, Engine]
    admission: Admission  # requests and live sessions in progress (service/http/admission.py)
    metrics: Metrics  # the Prometheus series (service/http/metrics.py)
    videos: VideoJobs  # this replica's video jobs (service/jobs.py)
    previews: PreviewCache  # the style previews and the sample, per engine
    trainer: TrainerJobs  # the trainer jobs, run by `stylebox worker` (service/trainer.py)
    draining: bool = False  # True once shutdown starts: /readyz answers 503 from then on
    # Bound to the event loop that serves: made here, made again as the lifespan starts.
    limiter: CapacityLimiter = field(init=False)  # inferences at once: max_concurrency
    codec_limiter: CapacityLimiter = field(init=False)  # decodes and encodes at once
    reload_lock: Lock = field(init=False)  # one POST /admin/reload at a time

    def __post_init__(self) -> None:
        self.bind()

    @property
    def engine(self) -> Engine | None:
        """The default model's engine (MODEL_PATH's), None while it is not loaded."""
        return self.engines.get(DEFAULT_MODEL)

    @engine.setter
    def engine(self, engine: Engine | None) -> None:
        self.set_engine(DEFAULT_MODEL, engine)

    def set_engine(self, name: str, engine: Engine | None) -> None:
        """Swap model `name`'s engine in (None: drop it): one assignment a request sees
        whole, before or after."""
        if engine is None:
            self.engines.pop(name, None)
        else:
            self.engines[name] = engine

    @property
    def served(self) -> list[str]:
        """Every model's name, loaded or not: `default` first, then EXTRA_MODELS' order."""
        return list(self.settings.model_paths)

    @property
    def live_model(self) -> str:
        """The model a live session uses when it names none (LIVE_MODEL; auto chooses by
        each loaded model's time at 640 x 480, service/models.py)."""
        return choose_live(self.settings.live_model,
                           {name: e.live_ms for name, e in self.engines.items()})

    def bind(self) -> None:
        """New limiters and lock, for the event loop that runs this."""
        self.limiter = CapacityLimiter(self.settings.max_concurrency)
        # Decode/encode may hold a full-size image each; bound them too, but less tightly.
        self.codec_limiter = CapacityLimiter(max(4, 2 * self.settings.max_concurrency))
        self.reload_lock = Lock()


def state_of(app: Any) -> ServiceState:
    """The state of an app `create_app` made."""
    return app.state.stylebox


async def get_state(connection: HTTPConnection) -> ServiceState:
    """The dependency: the state of the app serving this request or WebSocket."""
    return state_of(connection.app)


StateDep = Annotated[ServiceState, Depends(get_state)]  # a parameter: `state: StateDep`
