"""Execute a demo notebook headless: ``python -m tests.run_notebook NOTEBOOK``.

With ``nbclient`` and a Jupyter kernel installed (the ``demos`` extra) the notebook runs in a
real kernel, as Jupyter would run it; otherwise its code cells run in order in one namespace,
here. Either way the first failing cell stops it with a traceback and a non-zero exit status.
Outputs are never written back: the committed notebooks stay cleared.
"""

import json
import sys
from pathlib import Path


def run_with_nbclient(path: Path) -> bool:
    """Run in a kernel; False when nbclient or a kernel is not available."""
    try:
        import nbformat
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient import NotebookClient
    except ImportError:
        return False
    nb = nbformat.read(path, as_version=4)
    try:
        NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    except NoSuchKernel:
        return False
    print(f"ran {path} in a Jupyter kernel")
    return True


def run_cells(path: Path) -> None:
    """Run the code cells in order, in one namespace (what a kernel would do, minus display)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    namespace: dict = {"__name__": "__main__"}
    for n, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}[cell {n}]", "exec"), namespace)
    print(f"ran {path} cell by cell")


if __name__ == "__main__":
    notebook = Path(sys.argv[1])
    if not run_with_nbclient(notebook):
        run_cells(notebook)
