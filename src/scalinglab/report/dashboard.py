"""The local dashboard: the report's views served live from the store (read-only, so a ladder can
write at the same time), with the runs table refreshing every two seconds. Rendered pages are cached
and rebuilt only when the store's files change (a 10,000-run report takes seconds to build).

Starlette + uvicorn; binds 127.0.0.1 unless another address is asked for explicitly.
"""
from __future__ import annotations

import warnings
from pathlib import Path


def store_signature(store_path: Path) -> tuple:
    """Changes whenever the store is written: size and modification time of the database and of its WAL
    (an empty WAL, which a read-only reader leaves behind, counts as none)."""
    sig = []
    for p in (store_path, store_path.with_name(store_path.name + "-wal")):
        try:
            st = p.stat()
        except FileNotFoundError:
            st = None
        sig.append((st.st_mtime_ns, st.st_size) if st is not None and st.st_size else None)
    return tuple(sig)


class PageCache:
    """Rendered pages by name, dropped together when the store's signature changes."""

    def __init__(self, store_path: Path):
        self.store_path = store_path
        self._signature = None
        self._pages: dict[str, str] = {}

    def get(self, name: str, render) -> str:
        sig = store_signature(self.store_path)
        if sig != self._signature:
            self._pages, self._signature = {}, sig
        if name not in self._pages:
            self._pages[name] = render()
        return self._pages[name]


def create_app(store_path: str | Path, allowed_hosts=("localhost", "127.0.0.1", "::1")):
    """The dashboard's app; requests whose Host header is not in ``allowed_hosts`` get 400 (DNS rebinding)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from ..store import RunStore
    from .html import render_report, runs_table

    store_path = Path(store_path)
    cache = PageCache(store_path)

    def _open():
        return RunStore(store_path, readonly=True)

    def _render(view):
        def render():
            with _open() as st:
                return view(st)
        return render

    async def index(request):
        return HTMLResponse(cache.get("index", _render(
            lambda st: render_report(st, title="scalinglab dashboard", live=True))))

    async def runs_table_view(request):
        return HTMLResponse(cache.get("runs-table", _render(lambda st: runs_table(st.runs()))))

    async def api_runs(request):
        with _open() as st:
            runs = st.runs()
        return JSONResponse({"runs": [{"run_id": r.run_id, "name": r.name, "status": r.status, "final_loss": r.final_loss,
                                       "n_total": r.n_total, "tokens": r.tokens, "progress": r.extra.get("progress")}
                                      for r in runs]})

    async def api_curve(request):
        with _open() as st:
            return JSONResponse({"curve": st.curve(request.path_params["run_id"])})

    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    return Starlette(routes=[Route("/", index), Route("/api/runs-table", runs_table_view), Route("/api/runs", api_runs),
                             Route("/api/curves/{run_id}", api_curve)],
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))])


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def serve(store_path: str | Path, host: str = "127.0.0.1", port: int = 8765,
          allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> None:
    """Run the dashboard until interrupted."""
    import uvicorn
    if not Path(store_path).exists():
        raise FileNotFoundError(f"no run store at {store_path}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"serving on {host}: the dashboard has no authentication; anyone who can reach this address "
                      "can read the store", RuntimeWarning, stacklevel=2)
    uvicorn.run(create_app(store_path, allowed_hosts), host=host, port=port, log_level="warning")
