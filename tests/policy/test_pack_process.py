"""Start the pack as the Pulumi CLI does (`python -m pulumi.policy <engine> policy`) and talk to it
over gRPC: the pack loads, lists its policies as mandatory, and reports a violation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy.llm_uk8s_rules import ALL_POLICIES
from tests.policy.harness import deployment

REPO = Path(__file__).resolve().parents[2]
MANDATORY = 1  # analyzer_pb2.EnforcementLevel MANDATORY


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "policy"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else port
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_pack_lists_every_policy_as_mandatory(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "llm-uk8s"
    assert [p.name for p in info.policies] == [p.name for p in ALL_POLICIES]
    assert {p.enforcementLevel for p in info.policies} == {MANDATORY}


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, manifest: dict) -> list[str]:
    props = struct_pb2.Struct()
    json_format.ParseDict(manifest, props)
    request = analyzer_pb2.AnalyzeRequest(
        type="kubernetes:apps/v1:Deployment",
        properties=props,
        urn="urn:pulumi:dev::llm-uk8s::kubernetes:apps/v1:Deployment::llm",
        name="llm",
    )
    return [d.policyName for d in stub.Analyze(request, timeout=30).diagnostics]


def test_engine_path_reports_violations(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    assert analyze(analyzer, deployment()) == []
    bad = deployment(image="reg/llmserve:latest", env=[{"name": "HF_TOKEN", "value": "x"}])
    assert sorted(analyze(analyzer, bad)) == [
        "no-latest-or-untagged-images",
        "no-secret-in-plain-env",
    ]
