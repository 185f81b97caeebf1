"""ProjectId as the SDK schemas and API docs say: a configured project goes with every request;
with none, optional actions go without it (UCloud uses the default project) and the actions
that require it (DescribeVPC, CreateUK8SClusterV2, GetUK8SVersions) get the default project
from GetProjectList. The fake refuses those actions without a ProjectId, as their docs mark
it required."""

from __future__ import annotations

import pytest

from components.ucloud.api import UCloudApi, action_name, requires_project
from components.ucloud.base import Timings
from components.ucloud.credentials import resolve_credentials
from components.ucloud.errors import MissingProjectError
from components.ucloud.subnet import SubnetProvider
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import PROJECT, cluster_inputs, subnet_inputs, vpc_inputs

DEFAULT = "org-fake-default"  # the fake's GetProjectList marks it IsDefault


def projects_sent(fake: FakeUCloud, action: str) -> list[str | None]:
    return [params.get("ProjectId") for params in fake.sent(action)]


def test_the_sdk_schemas_require_project_id_for_exactly_these_actions() -> None:
    ours = [
        "CreateVPC", "DescribeVPC", "DeleteVPC", "CreateSubnet", "DescribeSubnet",
        "UpdateSubnetAttribute", "DeleteSubnet", "AllocateEIP", "DescribeEIP",
        "UpdateEIPAttribute", "ModifyEIPBandwidth", "ReleaseEIP", "DescribeFirewall",
        "CreateNATGW", "DescribeNATGW", "UpdateNATGW", "UpdateNATGWSubnet", "EnableWhiteList",
        "DeleteNATGW", "CreateUFSVolume", "DescribeUFSVolume2", "ExtendUFSVolume",
        "UpdateUFSVolumeInfo", "RemoveUFSVolume", "AddUFSVolumeMountPoint",
        "DescribeUFSVolumeMountpoint", "RemoveUFSVolumeMountPoint", "CreateUK8SClusterV2",
        "ListUK8SClusterV2", "GetClusterConfig", "ModifyUK8SClusterName", "DelUK8SCluster",
        "AddUK8SUHostNode", "ListUK8SClusterNodeV2", "DelUK8SClusterNodeV2",
        "DescribeUK8SImage", "GetUK8SVersions",
    ]  # fmt: skip
    required = {action for action in ours if requires_project(action)}
    assert required == {"DescribeVPC", "CreateUK8SClusterV2", "GetUK8SVersions"}
    assert requires_project("describe_vpc") and not requires_project("describe_subnet")


def test_sdk_method_names_map_to_actions() -> None:
    assert action_name("describe_ufs_volume_2") == "DescribeUFSVolume2"
    assert action_name("list_uk8s_cluster_node_v2") == "ListUK8SClusterNodeV2"
    assert action_name("describe_natgw") == "DescribeNATGW"


def test_a_configured_project_goes_with_every_request(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    vpc = VpcProvider(timings).create(vpc_inputs())
    subnet = SubnetProvider(timings).create(subnet_inputs(vpc.id))
    SubnetProvider(timings).delete(subnet.id, subnet.outs)
    VpcProvider(timings).delete(vpc.id, vpc.outs)
    sent = {params.get("ProjectId") for action, params in ucloud_env.calls}
    assert sent == {PROJECT}
    assert ucloud_env.count("GetProjectList") == 0


def test_without_a_project_only_the_actions_that_require_one_get_the_default(
    ucloud_env: FakeUCloud, timings: Timings
) -> None:
    vpc = VpcProvider(timings).create(vpc_inputs(project_id=None))
    subnet = SubnetProvider(timings).create(subnet_inputs(vpc.id, project_id=None))
    SubnetProvider(timings).delete(subnet.id, subnet.outs)
    VpcProvider(timings).delete(vpc.id, vpc.outs)

    assert set(projects_sent(ucloud_env, "DescribeVPC")) == {DEFAULT}
    for action in ("CreateVPC", "DeleteVPC", "CreateSubnet", "DescribeSubnet", "DeleteSubnet"):
        assert set(projects_sent(ucloud_env, action)) == {None}, action
    # Looked up once per provider operation that needs it (VPC create, VPC delete).
    assert ucloud_env.count("GetProjectList") == 2
    assert ucloud_env.resources("vpc") == {}


def test_the_project_from_the_environment_is_used_everywhere(
    ucloud_env: FakeUCloud, timings: Timings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCLOUD_PROJECT_ID", "org-from-env")
    VpcProvider(timings).create(vpc_inputs(project_id=None))
    assert {params.get("ProjectId") for _, params in ucloud_env.calls} == {"org-from-env"}
    assert ucloud_env.count("GetProjectList") == 0


def test_cluster_create_without_a_project_sends_the_default_one(
    ucloud_env: FakeUCloud, timings: Timings, network: dict[str, str]
) -> None:
    """CreateUK8SClusterV2 goes through the generic invoke; the project rule applies there too."""
    Uk8sClusterProvider(timings).create(cluster_inputs(network, project_id=None))
    assert projects_sent(ucloud_env, "CreateUK8SClusterV2") == [DEFAULT]
    assert set(projects_sent(ucloud_env, "ListUK8SClusterV2")) == {None}


def test_no_default_project_is_explained(ucloud_env: FakeUCloud, timings: Timings) -> None:
    ucloud_env.cloud.projects = [("org-a", False)]
    with pytest.raises(MissingProjectError) as failure:
        VpcProvider(timings).create(vpc_inputs(project_id=None))
    message = str(failure.value)
    assert "project_id" in message and "ucloud:projectId" in message
    assert "UCLOUD_PROJECT_ID" in message
    assert ucloud_env.count("CreateVPC") == 0


def test_the_fake_refuses_describe_vpc_without_a_project(ucloud_env: FakeUCloud) -> None:
    """Guards the tests above: a DescribeVPC sent with no ProjectId fails (160)."""
    client = UCloudApi(resolve_credentials(), "cn-bj2", None)._client(None)
    with pytest.raises(Exception, match="DescribeVPC - 160"):
        client.invoke("DescribeVPC", {})
    assert ucloud_env.count("DescribeVPC") == 1
