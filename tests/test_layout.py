"""The package's shape, checked over its source (ast, nothing imported): no import circle at
run time, no private name taken across modules, every role in its own folder, small files,
and the public import paths of SPEC.md and the docs still there."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "zmqpipeline"

MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, leaving out what runs only under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, str]]:
    """``(module imported, name taken from it)`` for every run-time import in a module."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in known:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub, "") if sub in known else (target, alias.name)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target, _ in imports_of(name, path, known) if target != name}
        for name, path in known.items()
    }


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as the path that closes it, or ``None``."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_circle_at_run_time():
    circle = find_circle(graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_finder_finds_a_circle():
    """The check above can fail: a made-up graph with a circle is caught, one without is not."""
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_a_type_checking_import_is_no_run_time_edge():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\nimport y\n"
    )
    names = [a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names]
    assert names == ["y"]


def test_no_module_takes_a_private_name_from_another():
    known = modules()
    taken = [
        f"{name} takes {target}.{what}"
        for name, path in known.items()
        for target, what in imports_of(name, path, known)
        if what.startswith("_") and not what.startswith("__")
    ]
    assert not taken, taken


def test_no_module_reads_a_private_attribute_of_another_object():
    """``other._name`` is read only on ``self`` and ``cls`` (and the standard library's
    ``os._exit``): one module does not reach into another's internals. The one exception is
    marked ``# third-party:`` on its line, saying why (a library with no public way)."""
    found = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id not in ("self", "cls", "os", "sys")
                and "# third-party:" not in lines[node.lineno - 1]
            ):
                found.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, found


def test_every_role_has_its_own_folder_and_the_top_level_is_small():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    for role in (
        "distributor",
        "collector",
        "worker",
        "service",
        "journal",
        "runtime",
        "protocol",
        "cli",
        "utils",
    ):
        assert role in folders, f"no folder zmqpipeline/{role}/"
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_module_or_function_is_too_long():
    long_ones = []
    for name, path in modules().items():
        text = path.read_text()
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            long_ones.append(f"{name}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_ones.append(f"{name}.{node.name}: {length} lines")
    assert not long_ones, long_ones


PUBLIC_PATHS = [
    # SPEC.md section 2, and the paths the docs name
    (
        "zmqpipeline",
        "Task TaskType EndpointAddress Distributor SingleThreadedWorker "
        "MultiThreadedWorker Collector MetaDataWorker Service ServiceWorker ServiceClient "
        "configureLogging Control Pusher Security Settings RunReport",
    ),
    ("zmqpipeline.worker", "SingleThreadedWorker MultiThreadedWorker MetaDataWorker"),
    ("zmqpipeline.distributor", "Distributor RunReport"),
    ("zmqpipeline.collector", "Collector"),
    ("zmqpipeline.service", "Service ServiceWorker ServiceClient"),
    (
        "zmqpipeline.utils.messages",
        "MESSAGE_TYPE_ACK MESSAGE_TYPE_SUCCESS MESSAGE_TYPE_FAILURE "
        "MESSAGE_TYPE_READY MESSAGE_TYPE_END MESSAGE_TYPE_DATA MESSAGE_TYPE_META_DATA "
        "MESSAGE_TYPE_EMPTY get",
    ),
    ("zmqpipeline.utils.serializer", "serialize deserialize"),
    ("zmqpipeline.utils.shutdown", "kill_current_process"),
    ("zmqpipeline.errors", "ZmqPipelineError ConfigurationError ProtocolError SerializationError"),
    ("zmqpipeline.task", "Task"),
    ("zmqpipeline.types", "TaskType EndpointAddress"),
    ("zmqpipeline.settings", "Settings"),
    ("zmqpipeline.security", "Security"),
]


@pytest.mark.parametrize(("module", "names"), PUBLIC_PATHS, ids=[m for m, _ in PUBLIC_PATHS])
def test_public_import_paths_keep_working(module, names):
    imported = importlib.import_module(module)
    missing = [n for n in names.split() if not hasattr(imported, n)]
    assert not missing, f"{module} lacks {missing}"


def test_the_same_class_under_every_public_path():
    import zmqpipeline
    import zmqpipeline.worker

    assert zmqpipeline.worker.MultiThreadedWorker is zmqpipeline.MultiThreadedWorker
    assert zmqpipeline.worker.MetaDataWorker is zmqpipeline.MetaDataWorker
