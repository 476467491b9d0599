"""MkDocs hook: the docstrings' Sphinx cross-reference roles (``:class:`~spot.core.models.SPoTViT```) drawn as code.

mkdocstrings renders the docstrings as Markdown, where a role is left as text before its code span
(``:class:<code>~spot.core.models.SPoTViT</code>``); this keeps the code span (the last name only after ``~``, as Sphinx
shows it) and drops the role."""
import re

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):<code>(~?)([\w.]+)(\(\))?</code>")


def on_page_content(html, **kwargs):
    return ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}"
                              f"{m.group(3) or ''}</code>", html)
