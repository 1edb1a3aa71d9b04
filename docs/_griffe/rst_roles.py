"""A Griffe extension for the API reference: the package's docstrings are written with a
few reStructuredText habits (``:class:`X``` roles, ``::`` before literal blocks, simple
``=====`` tables), and its attributes are documented Sphinx-style with ``#:`` comments
above them. Turn the former into Markdown, and the latter into docstrings, as the code is
loaded, so mkdocstrings renders both. The package's own files are not touched."""

from __future__ import annotations

import re
from typing import Any

import griffe

# Public names rendered at the top level of the reference (``::: zmqpipeline.NAME``):
# a role naming one of them becomes a link, any other becomes inline code.
LINKED = set(
    """
    Collector ConfigurationError Distributor EndpointAddress EndpointError MetaDataWorker
    MultiThreadedWorker ProtocolError RunReport SerializationError Service ServiceClient
    ServiceError ServiceWorker Settings SingleThreadedWorker Task TaskType ZmqPipelineError
    """.split()
)

_ROLE = re.compile(r":(?:py:)?(class|meth|func|mod|data|attr|exc|obj):`(~?)([^`]+)`")
_RULE = re.compile(r"^\s*=+( +=+)+\s*$")


def _role(match: re.Match[str]) -> str:
    kind, tilde, target = match.groups()
    target = target.strip()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    if kind in ("meth", "func"):
        shown += "()"
    name = target.rsplit(".", 1)[-1]
    if kind in ("class", "exc") and name in LINKED:
        return f"[`{shown}`][zmqpipeline.{name}]"
    return f"`{shown}`"


def _tables_to_code(text: str) -> str:
    """Indent reST simple tables (three ``====`` rules) so they show as preformatted text."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _RULE.match(lines[i]):
            rules = [j for j in range(i, len(lines)) if _RULE.match(lines[j])][:3]
            if len(rules) == 3:
                end = rules[2]
                if out and out[-1].strip():
                    out.append("")
                out.extend("    " + line for line in lines[i : end + 1])
                out.append("")
                i = end + 1
                continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def convert(text: str) -> str:
    text = _ROLE.sub(_role, text)
    text = re.sub(r"(\S)::\n", r"\1:\n", text)  # "layout::" before a literal block
    return _tables_to_code(text)


def _comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above an attribute's definition, if any."""
    if obj.lineno is None or obj.filepath is None or isinstance(obj.filepath, list):
        return None
    try:
        lines = obj.lines_collection[obj.filepath]
    except KeyError:
        return None
    found: list[str] = []
    index = obj.lineno - 2  # lineno is 1-based; start at the line above
    while index >= 0 and lines[index].strip().startswith("#:"):
        found.insert(0, lines[index].strip()[2:].strip())
        index -= 1
    return " ".join(found) or None


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute:
            text = _comment_docstring(obj)
            if text:
                obj.docstring = griffe.Docstring(text, lineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
