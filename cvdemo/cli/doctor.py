"""``python -m cvdemo doctor``: build what a Hugging Face Space builds (a fresh venv from
requirements.txt, the README's front matter checked against the pinned Gradio), start the app
with the network blocked, answer one request, and say what would fail (``cvdemo.deploy``)."""
from __future__ import annotations

from pathlib import Path

from .. import config
from .console import emit, info


def run(args) -> int:
    from ..deploy import doctor

    report = doctor(Path(args.root), requirements=Path(args.requirements) if args.requirements else None,
                    python=args.python, venv=Path(args.venv) if args.venv else None,
                    say=(lambda line: None) if args.json else info)
    emit(report.as_dict(), args.json, [f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in report.checks]
         + [("deploy check passed" if report.ok else "deploy check failed: a Space would fail the same way")])
    return 0 if report.ok else 1


def register(sub) -> None:
    """Add ``python -m cvdemo doctor``."""
    p = sub.add_parser("doctor", help="check a deploy: fresh venv, front matter, the app offline, one request")
    p.add_argument("--root", default=str(config.ROOT), help="the repository to check (default: this one)")
    p.add_argument("--requirements", default=None, help="the requirements file (default: <root>/requirements.txt)")
    p.add_argument("--python", default=None,
                   help="run the app with this interpreter instead of building a fresh venv (quicker, less strict)")
    p.add_argument("--venv", default=None, help="where to build the fresh venv (default: a temporary folder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
