"""UK8S stock-outs: how UCloud says "no hosts of that kind left", and the error we raise.

Why its own module: the cluster (masters) and the node groups (GPU hosts) both poll for it, and a
stock-out must end a wait at once instead of after 30 minutes of billing.
"""

from __future__ import annotations

from components.ucloud.errors import ResourceFailedError

# ucloud-sdk-python3 0.11.150 services/uk8s/client.py:1748: NodeInfoV2.NodeLogInfo is NORESOURCE
# when adding a node finds no resources; :1810: ClusterSet.ClusterLogInfo is NORESOURCE when
# creating the cluster found none, else empty. The same in UCloudDoc-Team/api
# uk8s-api/list_uk8s_cluster_node_v2.md:71 and uk8s-api/list_uk8s_cluster_v2.md:68.
# No source documents a RetCode for a stock-out at AddUK8SUHostNode or CreateUK8SClusterV2, so
# the word in an error message is only a fallback there.
NO_RESOURCE = "NORESOURCE"


def is_stock_out(text: object) -> bool:
    """NodeLogInfo / ClusterLogInfo (or, as a fallback, an error message) saying NORESOURCE."""
    return NO_RESOURCE in str(text or "").upper()


class StockOutError(ResourceFailedError):
    """UCloud has no stock of what was asked for; `wanted` names it (GPU type, zone...)."""

    def __init__(self, kind: str, resource_id: str, state: str, detail: str, wanted: str) -> None:
        super().__init__(kind, resource_id, state, detail)
        self.wanted = wanted
        self.args = (
            f"{kind} {resource_id}: UCloud has no stock ({NO_RESOURCE}) of {wanted} "
            f"(state {state}: {detail}); choose another zone or type, or retry later",
        )
