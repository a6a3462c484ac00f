"""Layers only look down: a test in place of import-linter, reading imports with `ast`.

models/validation -> serde -> retry -> transport -> resources -> bulk -> client -> sync
runtime -> generated facade. Imports under `if TYPE_CHECKING:` are for annotations only
and are not counted; every other import is, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ovo_async"

#: What sits above the transport layer (bulk engine, client, runtime, facade, resources).
ABOVE_TRANSPORT = {"_bulk", "_runtime", "_sync", "_client", "resources", "_transport"}

#: module (relative to the package) -> modules it must never import at run time.
FORBIDDEN = {
    "resources/sms.py": {"_bulk", "_journal", "_runtime", "_sync", "_client"},
    "_transport.py": {"_bulk", "_journal", "_runtime", "_sync", "_client", "resources"},
    "_retry.py": ABOVE_TRANSPORT | {"_journal"},
    "_pool.py": ABOVE_TRANSPORT,
    # The sockets under the pool know nothing of the SDK.
    "_sockets.py": ABOVE_TRANSPORT | {"_pool", "_retry", "_serde", "models"},
    "_pacer.py": ABOVE_TRANSPORT,
    "_serde.py": ABOVE_TRANSPORT | {"_retry"},
    "models.py": ABOVE_TRANSPORT | {"_serde"},
    "_validation.py": ABOVE_TRANSPORT,
    "_errors.py": ABOVE_TRANSPORT,
    "_defaults.py": ABOVE_TRANSPORT | {"_retry", "_serde", "models"},
    "_journal.py": {"_bulk", "_runtime", "_sync", "_client"},
    "_bulk.py": {"_runtime", "_sync", "_client"},
    "_client.py": {"_runtime", "_sync"},
}


def runtime_imports(path: Path) -> set[str]:
    """The `ovo_async` modules a file imports outside `if TYPE_CHECKING:` blocks."""
    tree: ast.AST = ast.parse(path.read_text())
    found: set[str] = set()
    depth = len(path.relative_to(PACKAGE).parts) - 1

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = node.module or ""
                up = node.level - 1 - depth  # > 0 would leave the package
                assert up <= 0, ast.unparse(node)
                names = [base] if base else [a.name for a in node.names]
                found.update(n.split(".")[0] for n in names if n)
            elif node.module and node.module.startswith("ovo_async."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ovo_async."):
                    found.add(alias.name.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_layers_only_look_down(module: str) -> None:
    imported = runtime_imports(PACKAGE / module)
    assert not imported & FORBIDDEN[module], f"{module} imports {imported & FORBIDDEN[module]}"


def test_the_checker_sees_function_level_imports() -> None:
    # The resource once built the bulk engine through an import inside send_many.
    source = PACKAGE / "_client.py"
    assert "_bulk" in runtime_imports(source)


def test_importing_the_sync_client_leaves_the_async_machinery_for_later() -> None:
    """`from ovo_async import OVOClient` (a script's or a Django view's first line) must
    not build the models' attrs classes or load the transport: they load with the
    first client made."""
    import subprocess
    import sys

    # What httpx loads by itself is not the SDK's doing (httpx 0.27 loads its command
    # line, and with it trio and attrs, when click and rich are installed).
    code = (
        "import sys, httpx\n"
        "ours = {'attrs', 'cattrs', 'ovo_async.models', 'ovo_async._transport'}\n"
        "heavy = sorted(ours - set(sys.modules))\n"
        "from ovo_async import OVOClient\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "OVOClient(api_key='k').close()\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    before, after = result.stdout.splitlines()
    assert before == "[]"
    assert "'ovo_async.models'" in after and "'ovo_async._transport'" in after
