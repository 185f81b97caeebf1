"""Preflight: check a stack against the live UCloud account with read-only calls, and price it.

`make preflight STACK=<stack>` (tools/preflight.py) and the `pulumi preview` hook
(in_pulumi.run_if_credentials) both go through run.run_preflight.
"""
