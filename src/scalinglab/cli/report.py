"""The store, shown: ``report`` (one offline HTML file) and ``serve`` (a live dashboard)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import JsonOpt, StoreOpt, _emit_json, _existing_store, _fail, _require, app, console, err


@app.command("report")
def report_cmd(out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
               static: Optional[Path] = typer.Option(None, "--static", help="Also write matplotlib PNG/SVG figures here."),
               store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Write a single offline HTML report of everything in the store."""
    if out.is_dir():
        _fail(f"--out {out} is a directory; give the HTML file to write (e.g. {out / 'report.html'})")
    _require("report", "scalinglab report", "plotly")
    _existing_store(store)
    from ..report.html import write_report
    res = write_report(store, out, static_dir=static)
    if as_json:
        return _emit_json(res)
    console.print(f"wrote {res['report']} ({res['bytes'] / 1e6:.1f} MB, offline)", markup=False)
    for p in res["static_figures"]:
        if p.endswith(".png"):
            console.print(f"figure: {p}", markup=False)


@app.command("serve")
def serve_cmd(store: Path = StoreOpt, host: str = typer.Option("127.0.0.1", help="Address to bind (default: this machine only)."),
              port: int = typer.Option(8765, min=1, max=65535),
              allowed_hosts: str = typer.Option("localhost,127.0.0.1,::1", "--allowed-hosts",
                                                help="Host names the dashboard answers to, comma-separated: requests with "
                                                     "any other Host header are refused (DNS rebinding). Add the name "
                                                     "you serve it under, or * for any.")):
    """Serve a live dashboard of the store (read-only; safe while a ladder writes)."""
    _require("serve", "scalinglab serve", "plotly", "starlette", "uvicorn")
    _existing_store(store)
    from ..report.dashboard import serve
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] binding {host}: the dashboard has no authentication")
    hosts = [h.strip() for h in allowed_hosts.split(",") if h.strip()]
    if not hosts:
        _fail("--allowed-hosts needs at least one host name (or * for any)")
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::") and host not in hosts:
        hosts.append(host)
    console.print(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop; answers to Host: {', '.join(hosts)})", markup=False)
    try:
        serve(store, host, port, tuple(hosts))
    except FileNotFoundError as e:
        _fail(str(e))
