"""Launch the Gradio app in this process on a free port, for the gradio_client and browser tests."""
from __future__ import annotations

import contextlib
import socket
import zipfile
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(service, **launch_kwargs):
    """Yield (url, demo) for the app over ``service`` on a free loopback port.

    On exit a running training is stopped and awaited, then the server closes.
    """
    import webapp

    demo = webapp.build_app(service)
    _, url, _ = webapp.launch(demo, service, prevent_thread_lock=True, quiet=True,
                           server_name="127.0.0.1", server_port=free_port(), **launch_kwargs)
    try:
        yield url, demo
    finally:
        job = service.job
        if job is not None and not job.done.is_set():
            job.stop.set()
            job.done.wait(120)
        demo.close()


def tiny_service(checkpoints: Path, root: Path, **kwargs):
    """A Service over tiny checkpoints and a 3-class, 2-per-class database searched by pixels."""
    from cvdemo.service import Service

    from test_retrieval import make_database

    database = make_database(root / "db", per_class=2, classes=(0, 1, 2))
    return Service(checkpoints=checkpoints, runs=root / "runs", database=database, retrieval_extractor="pixels",
                   **kwargs)


@contextlib.contextmanager
def running_app(checkpoints: Path, runs: Path, **service_options):
    """Yield (url, service) for an app serving ``checkpoints``; trained sets go to ``runs``."""
    from cvdemo.service import Service

    service = Service(checkpoints=checkpoints, runs=runs, **service_options)
    with serving(service) as (url, _):
        yield url, service


def zip_folder(folder: Path, out: Path) -> Path:
    """Zip a class-folder dataset the way a user would (folder name as the top entry)."""
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder).name / path.relative_to(folder))
    return out
