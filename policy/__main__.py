"""Entry point Pulumi runs for `pulumi preview --policy-pack policy`.

The rules live in `llm_uk8s_rules/` (one module per concern) so tests can import and call them
without starting the policy server that `PolicyPack(...)` starts.
"""

import sys
from pathlib import Path

# Pulumi runs this file from the pack directory; make the rules importable however it is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_uk8s_rules import ALL_POLICIES
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="llm-uk8s",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=ALL_POLICIES,
)
