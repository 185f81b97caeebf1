"""`ConfigError`: the one error for a bad setting, in every layer.

Why one class: the stack config (components/stack/config.py) and the components' own Args checks
(components/k8s/*) both refuse bad input before anything is registered, and callers
(`__main__.py`, tools/preflight.py, the tests) should catch one type whichever layer refused.
Every problem names the field (an Args field, or a stack's config key), the bad value and what is
allowed, and never a secret.
"""

from __future__ import annotations

from collections.abc import Sequence

HEADING = "invalid stack configuration:"


class ConfigError(ValueError):
    """Bad configuration; `problems` holds one line per problem.

    A component's check raises one problem (a str), and the message is that line. The stack config
    collects every problem of a stack (a list) so `pulumi preview` shows them all at once; its
    message lists them under HEADING.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        if isinstance(problems, str):
            self.problems = [problems]
            message = problems
        else:
            self.problems = list(problems)
            message = HEADING + "\n  - " + "\n  - ".join(self.problems)
        super().__init__(message)
