"""Griffe extension for the docs site: the docstrings' reST roles (``:class:`X```,
``:func:`~a.b.c```) shown as code (``X``, ``c``), as Sphinx would show them; mkdocstrings'
numpy style would print the role itself."""

import re

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def _plain(text: str) -> str:
    return _ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`",
                     text)


class ReSTRoles(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _plain(obj.docstring.value)
