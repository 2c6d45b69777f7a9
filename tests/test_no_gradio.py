"""The cvdemo package never imports Gradio: every module imports with Gradio made unimportable."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

SCRIPT = r"""
import importlib, pkgutil, sys

class NoGradio:
    def find_spec(self, name, path=None, target=None):
        if name == "gradio" or name.startswith(("gradio.", "gradio_client")):
            raise ImportError(f"gradio is blocked in this test ({name})")
        return None

sys.meta_path.insert(0, NoGradio())
for name in [m for m in sys.modules if m.startswith("gradio")]:
    del sys.modules[name]
try:
    import gradio  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not work")

import cvdemo
failed = []
names = sorted(m.name for m in pkgutil.walk_packages(cvdemo.__path__, "cvdemo."))
for name in names:
    if name == "cvdemo.__main__":
        continue                     # runs the CLI on import
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{name}: {type(err).__name__}: {err}")
leaked = sorted(m for m in sys.modules if m.startswith("gradio"))
print("IMPORTED", len(names))
print("FAILED", failed)
print("LEAKED", leaked)
raise SystemExit(1 if failed or leaked else 0)
"""


def test_every_cvdemo_module_imports_without_gradio():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    imported = int(proc.stdout.split("IMPORTED ")[1].split()[0])
    assert imported >= 10, proc.stdout              # the walk really found the package's modules
