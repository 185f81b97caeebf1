"""Credentials come from stack config or the environment, never from resource inputs."""

from __future__ import annotations

import logging

import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from components.ucloud.base import Timings
from components.ucloud.credentials import MissingCredentialsError, resolve_credentials
from components.ucloud.uk8s_cluster import Uk8sClusterProvider
from components.ucloud.vpc import VpcProvider
from tests.fake_ucloud import FakeUCloud
from tests.ucloud.conftest import cluster_inputs, vpc_inputs


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UCLOUD_PUBLIC_KEY", "UCLOUD_PRIVATE_KEY", "UCLOUD_BASE_URL", "UCLOUD_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def configured(provider: VpcProvider, values: dict[str, str]) -> VpcProvider:
    provider.configure(ConfigureRequest(Config(values, project_name="llm-uk8s")))
    return provider


def test_missing_keys_name_both_ways_to_set_them(no_env: None, timings: Timings) -> None:
    with pytest.raises(MissingCredentialsError) as failure:
        VpcProvider(timings).create(vpc_inputs())
    message = str(failure.value)
    for name in (
        "ucloud:publicKey",
        "ucloud:privateKey",
        "UCLOUD_PUBLIC_KEY",
        "UCLOUD_PRIVATE_KEY",
    ):
        assert name in message


def test_only_the_missing_key_is_named() -> None:
    with pytest.raises(MissingCredentialsError) as failure:
        resolve_credentials({"ucloud:publicKey": "pk"}, environ={})
    assert "ucloud:privateKey" in str(failure.value)
    assert "ucloud:publicKey (" not in str(failure.value)


def test_env_route_reaches_the_api(ucloud_env: FakeUCloud, timings: Timings) -> None:
    created = VpcProvider(timings).create(vpc_inputs())
    assert created.id in ucloud_env.resources("vpc")
    assert {call[1]["PublicKey"] for call in ucloud_env.calls} == {ucloud_env.public_key}


def test_config_route_reaches_the_api(fake: FakeUCloud, no_env: None, timings: Timings) -> None:
    provider = configured(
        VpcProvider(timings),
        {
            "ucloud:publicKey": fake.public_key,
            "ucloud:privateKey": fake.private_key,
            "ucloud:baseUrl": fake.base_url,
            "ucloud:projectId": "org-from-config",
        },
    )
    created = provider.create(vpc_inputs(project_id=None))
    assert created.id in fake.resources("vpc")
    assert fake.calls[-1][1]["ProjectId"] == "org-from-config"


def test_config_wins_over_env(ucloud_env: FakeUCloud, timings: Timings) -> None:
    provider = configured(
        VpcProvider(timings),
        {
            "ucloud:publicKey": "someone-else",
            "ucloud:privateKey": "wrong",
            "ucloud:baseUrl": ucloud_env.base_url,
        },
    )
    with pytest.raises(Exception, match="DescribeVPC - 172"):
        provider.create(vpc_inputs())


def test_wrong_private_key_is_rejected_by_signature(
    ucloud_env: FakeUCloud, timings: Timings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UCLOUD_PRIVATE_KEY", "not-the-key")
    with pytest.raises(Exception, match=" - 171: "):
        VpcProvider(timings).create(vpc_inputs())


def test_keys_are_not_in_repr_outputs_or_logs(
    ucloud_env: FakeUCloud,
    timings: Timings,
    network: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert ucloud_env.private_key not in repr(resolve_credentials())
    caplog.set_level(logging.DEBUG)
    cluster = Uk8sClusterProvider(timings).create(cluster_inputs(network))
    outputs = repr(cluster.outs)
    assert ucloud_env.private_key not in outputs and ucloud_env.public_key not in outputs
    logged = caplog.text
    for secret in (ucloud_env.private_key, "Secret-Pass1", "fake-token"):
        assert secret not in logged
