"""kubernetesVersion "1.30" is sent as the newest 1.30.x GetUK8SVersions offers; the input stays
"1.30", so nothing replaces the cluster on the next run."""

from __future__ import annotations

import pytest

from components.ucloud.base import Timings
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.uk8s_versions import K8sVersionError, choose_version
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import cluster_inputs

OFFERED = ["1.26.7", "1.30.9", "1.30.14", "1.30.3", "1.32.5"]


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [("1.30", "1.30.14"), ("1.30.3", "1.30.3"), (" 1.26 ", "1.26.7"), ("1.32.5", "1.32.5")],
)
def test_a_minor_version_becomes_its_newest_offered_patch(wanted: str, chosen: str) -> None:
    assert choose_version(wanted, OFFERED) == chosen


@pytest.mark.parametrize("wanted", ["1.31", "1.30.4", "latest", "v1.30", ""])
def test_a_version_uk8s_does_not_offer_is_refused_listing_the_offered_ones(wanted: str) -> None:
    with pytest.raises(K8sVersionError) as failure:
        choose_version(wanted, OFFERED)
    message = str(failure.value)
    assert "k8s_version" in message and repr(wanted) in message
    assert "1.26.7, 1.30.3, 1.30.9, 1.30.14, 1.32.5" in message


def test_the_cluster_is_created_with_the_resolved_version_and_keeps_its_input(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    provider = Uk8sClusterProvider(timings)
    inputs = cluster_inputs(network, k8s_version="1.30")
    cluster = provider.create(inputs)

    sent = dict(ucloud_env.calls)["CreateUK8SClusterV2"]
    assert sent["K8sVersion"] == "1.30.14"
    versions = dict(ucloud_env.calls)["GetUK8SVersions"]
    assert (versions["Kind"], versions["ProjectId"]) == ("Dedicated", "org-test")
    assert cluster.outs["k8s_version"] == "1.30"
    assert cluster.outs["resolved_k8s_version"] == "1.30.14"
    assert not provider.diff(cluster.id, cluster.outs, inputs).changes
    read = provider.read(cluster.id, cluster.outs)
    assert read.outs is not None and read.outs["k8s_version"] == "1.30"
    assert not provider.diff(cluster.id, read.outs, inputs).changes


def test_an_unoffered_version_fails_before_anything_is_bought(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    with pytest.raises(K8sVersionError, match=r"1\.30\.14"):
        Uk8sClusterProvider(timings).create(cluster_inputs(network, k8s_version="1.29"))
    assert ucloud_env.count("CreateUK8SClusterV2") == 0


def test_without_a_project_the_lookup_asks_in_the_default_project(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    # GetUK8SVersions requires ProjectId (SDK schema, API docs): the account's default project
    # is looked up with GetProjectList and sent, as UCloud's CLI does.
    Uk8sClusterProvider(timings).create(cluster_inputs(network, project_id=None))
    sent = [params for action, params in ucloud_env.calls if action == "GetUK8SVersions"]
    assert sent and all(p.get("ProjectId") == "org-fake-default" for p in sent)
