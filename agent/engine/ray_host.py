"""Ray backend for parallel rollouts: environment workers as Ray actors.

`cua eval SUITE --workers N --backend ray` runs each environment in a Ray actor (one
`WorkerCore`, the same code as a worker process) while the policy, the episode logic and
the run directory stay in the driver process (`agent.engine.workers.run_on_worker_hosts`).
The policy is either local to the driver (a GPU on the driver's machine) or an external
vLLM/SGLang server (``--policy openai --base-url ...``), which the driver calls
concurrently.

Which cluster:

- ``--ray-address ADDRESS`` (``backend_options["address"]``), else the ``RAY_ADDRESS``
  environment variable, joins an existing cluster: ``auto`` on a cluster node, or
  ``ray://HEAD:10001`` through Ray Client. The code must be importable on the nodes
  (``pip install qwen-cua`` there, or ``--backend-option
  init_options='{"runtime_env": {"working_dir": "."}}'``).
- Neither: a local Ray is started on this machine (``ray.init()`` with as many CPUs as
  workers, no dashboard) and shut down at the end.

Resources per actor: ``--backend-option actor_options='{"num_cpus": 1}'`` (the default),
or any ``ray.remote`` options, e.g. ``{"num_cpus": 2, "memory": 2e9}`` for a browser or
``{"resources": {"android_device": 1}}`` to place one actor per registered Android
device (start the nodes with ``ray start --resources='{"android_device": 4}'``).

Screenshots: actors send PNG bytes to the driver, which writes them (works on any
cluster). With the run directory on a filesystem shared by every node, pass
``--backend-option shared_storage=true`` and actors write screenshots themselves, sending
only hashes, as worker processes do.

Faults: an actor that dies (its node lost, the process killed) raises `WorkerDied` for
the episode in flight (recorded as an error) and is replaced by a new actor before its
next episode; one that does not answer within ``call_timeout_s`` is killed
(`WorkerHung`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from agent.engine.workers import (
    DEFAULT_CALL_TIMEOUT_S,
    DEFAULT_START_TIMEOUT_S,
    EnvironmentFactory,
    WorkerCore,
    WorkerDied,
    WorkerError,
    WorkerHung,
)

logger = logging.getLogger(__name__)

DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 1}
# A local Ray started for one eval: small object store, no dashboard.
LOCAL_INIT_OPTIONS: dict[str, Any] = {
    "include_dashboard": False,
    "object_store_memory": 100 * 2**20,
    "log_to_driver": True,
}


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


class _EnvActor:
    """The body of the Ray actor: a WorkerCore serving `call(op, args)`."""

    def __init__(self, factory: EnvironmentFactory) -> None:
        logging.basicConfig(level=logging.WARNING)
        self.core = WorkerCore(factory)

    def info(self) -> dict[str, Any]:
        return self.core.info()

    def call(self, op: str, args: tuple[Any, ...]) -> tuple[str, Any]:
        return self.core.reply(op, args)


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency
        raise RayUnavailable("the Ray backend needs `pip install 'qwen-cua[ray]'`") from exc
    return ray


class RaySession:
    """A connection to a Ray cluster (joined or started locally) for one run.

    `address`: cluster address (None: RAY_ADDRESS, else a new local Ray).
    `actor_options`: `ray.remote` options per environment actor (resources).
    `init_options`: extra `ray.init` keywords (runtime_env, namespace, ...).
    """

    def __init__(self, address: str | None = None, actor_options: dict[str, Any] | None = None,
                 init_options: dict[str, Any] | None = None, num_cpus: int | None = None) -> None:
        ray = _ray()
        self.actor_options = {**DEFAULT_ACTOR_OPTIONS, **(actor_options or {})}
        self._owns_ray = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            options = dict(init_options or {})
            if address is None:
                options = {**LOCAL_INIT_OPTIONS, **options}
                if num_cpus is not None:
                    options.setdefault("num_cpus", num_cpus)
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a new local cluster"
                raise RayUnavailable(f"cannot start or join Ray at {where}: {exc}") from exc
            self._owns_ray = True
            logger.info("Ray %s: %s", "joined" if address else "started locally",
                        ray.cluster_resources())
        self._actor_class = ray.remote(_EnvActor)

    def start_workers(self, count: int, factory: EnvironmentFactory, *,
                      call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
                      start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> list[RayWorker]:
        """`count` environment actors, started concurrently (closed again on failure)."""
        workers = [RayWorker(index, self, factory, call_timeout_s=call_timeout_s,
                             start_timeout_s=start_timeout_s, start=False)
                   for index in range(count)]
        try:
            for worker in workers:
                worker.launch()
            for worker in workers:
                worker.wait_ready()
        except BaseException:
            for worker in workers:
                worker.close()
            raise
        return workers

    def new_actor(self, factory: EnvironmentFactory) -> Any:
        return self._actor_class.options(**self.actor_options).remote(factory)

    def close(self) -> None:
        if self._owns_ray:
            with contextlib.suppress(Exception):
                _ray().shutdown()
            self._owns_ray = False


class RayWorker:
    """A `WorkerHandle` over one Ray actor."""

    def __init__(self, index: int, session: RaySession, factory: EnvironmentFactory, *,
                 call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
                 start_timeout_s: float = DEFAULT_START_TIMEOUT_S, start: bool = True) -> None:
        self.index = index
        self.session = session
        self.factory = factory
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self.info: dict[str, Any] = {}
        self._actor: Any = None
        self._ready: Any = None
        self._dead = True
        if start:
            self.launch()
            self.wait_ready()

    @property
    def alive(self) -> bool:
        return self._actor is not None and not self._dead

    @property
    def actor(self) -> Any:
        """The Ray actor handle (tests kill it with `ray.kill`)."""
        return self._actor

    def launch(self) -> None:
        self._actor = self.session.new_actor(self.factory)
        self._ready = self._actor.info.remote()

    def wait_ready(self) -> None:
        ray = _ray()
        try:
            self.info = ray.get(self._ready, timeout=self.start_timeout_s)
        except ray.exceptions.GetTimeoutError as exc:
            self._kill()
            raise WorkerError(f"Ray actor {self.index} did not start within "
                              f"{self.start_timeout_s:.0f} s: are there resources for "
                              f"{self.session.actor_options}? (cluster: "
                              f"{ray.available_resources()})") from exc
        except ray.exceptions.RayError as exc:
            self._kill()
            raise WorkerError(f"Ray actor {self.index} could not build its environment: "
                              f"{str(exc).strip().splitlines()[-1]}") from exc
        self._dead = False

    def call(self, op: str, *args: Any, timeout_s: float | None = None) -> Any:
        ray = _ray()
        if not self.alive:
            raise WorkerDied(f"Ray actor {self.index} is not running")
        timeout = timeout_s or self.call_timeout_s
        try:
            status, value = ray.get(self._actor.call.remote(op, args), timeout=timeout)
        except ray.exceptions.GetTimeoutError as exc:
            self._kill()
            raise WorkerHung(f"Ray actor {self.index} gave no answer to {op} within "
                             f"{timeout:.0f} s; killed, it restarts for the next episode") from exc
        except ray.exceptions.RayActorError as exc:
            self._kill()
            raise WorkerDied(f"Ray actor {self.index} (pid {self.info.get('pid')}) died during "
                             f"{op}; it restarts for the next episode") from exc
        if status == "err":
            raise value
        return value

    def _kill(self) -> None:
        self._dead = True
        if self._actor is not None:
            with contextlib.suppress(Exception):
                _ray().kill(self._actor, no_restart=True)

    def restart(self) -> None:
        self._kill()
        self.launch()
        self.wait_ready()

    def close(self) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                self.call("close", timeout_s=30)
        self._kill()
        self._actor = None


__all__ = ["DEFAULT_ACTOR_OPTIONS", "RaySession", "RayUnavailable", "RayWorker"]
