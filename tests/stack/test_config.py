"""Bad input is refused before any resource exists, naming key, value and allowed values."""

from __future__ import annotations

import pytest

from components.errors import ConfigError
from components.k8s import conventions
from components.k8s.model_fetch import ModelFetchArgs
from components.stack import config as stack_config
from components.stack.config import parse
from tests.stack.stack_values import STACKS, raw_values
from tools.stack_config import ROOT, project_file


def problems(stack: str = "dev", **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw_values(stack, **overrides), stack)
    return caught.value.problems


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_is_valid(stack: str) -> None:
    config = parse(raw_values(stack), stack)
    assert config.stack == stack


def test_schema_and_model_declare_the_same_keys() -> None:
    declared = set(project_file()["config"])
    assert declared == set(stack_config.KEYS)


def test_schema_gives_every_key_type_default_and_description() -> None:
    for key, spec in project_file()["config"].items():
        assert {"type", "default", "description"} <= set(spec), key


def test_stacks_differ_where_the_environments_should() -> None:
    dev, prod, local = (parse(raw_values(s), s) for s in ("dev", "prod", "local"))
    assert dev.gpu_node_count == 1 and prod.gpu_node_count == 2
    assert len(set(prod.zones)) >= 2
    assert prod.ufs_size_gb > dev.ufs_size_gb
    assert local.platform == "local" and local.gpus_per_replica == 0
    assert local.model_source == "bundled" and local.gpu_driver_mode == "none"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"ufsSizeGb": 550}, ["llm-uk8s:ufsSizeGb = 550", "in steps of 100"]),
        (
            {"ufsSizeGb": 400},
            ["llm-uk8s:ufsSizeGb = 400", "from 500 to 100000", "a new Basic volume", "grows to"],
        ),
        ({"serviceCidr": "10.60.128.0/20"}, ["llm-uk8s:serviceCidr", "overlaps vpcCidr"]),
        ({"subnetCidr": "10.61.0.0/24"}, ["llm-uk8s:subnetCidr", "inside vpcCidr 10.60.0.0/16"]),
        ({"vpcCidr": "8.8.0.0/16"}, ["llm-uk8s:vpcCidr = '8.8.0.0/16'", "10.0.0.0/8"]),
        ({"gpuType": "H100X"}, ["llm-uk8s:gpuType = 'H100X'", "'T4'", "'A800'"]),
        ({"gpuNodeLabels": [f"k{i}=v" for i in range(5)]}, ["llm-uk8s:gpuNodeLabels", "at most 4"]),
        ({"gpuNodeLabels": ["no-equals-sign"]}, ["llm-uk8s:gpuNodeLabels", "key=value"]),
        ({"gpuNodeTaints": ["k=v:Sometimes"]}, ["llm-uk8s:gpuNodeTaints", "NoSchedule"]),
        ({"gpusPerNode": 3}, ["llm-uk8s:gpusPerNode = 3", "1, 2, 4 or 8"]),
        ({"gpusPerReplica": 2}, ["llm-uk8s:gpusPerReplica = 2", "more than gpusPerNode"]),
        ({"replicas": 3}, ["llm-uk8s:replicas = 3", "at most 1 replica"]),
        ({"chargeType": "Weekly"}, ["llm-uk8s:chargeType = 'Weekly'", "'Dynamic'", "'Month'"]),
        ({"kubernetesVersion": "1.18"}, ["llm-uk8s:kubernetesVersion = '1.18'", "1.26 to 1.34"]),
        ({"zones": ["cn-sh2-01"]}, ["llm-uk8s:zones", "region 'cn-bj2'"]),
        ({"modelRevision": "main"}, ["llm-uk8s:modelRevision = 'main'", "40-character"]),
        (
            {"modelFetchTimeoutSeconds": 60},
            ["llm-uk8s:modelFetchTimeoutSeconds = '60'", "greater than or equal to 300"],
        ),
        (
            {"modelFetchTimeoutSeconds": "soon"},
            ["llm-uk8s:modelFetchTimeoutSeconds = 'soon'", "integer"],
        ),
        (
            {"serviceType": "LoadBalancer", "loadBalancerType": "public"},
            ["llm-uk8s:loadBalancerType = 'public'", "'inner' or 'outer'"],
        ),
        (
            {"serviceType": "LoadBalancer", "allowedCidrs": ["10.0.0.0/8"]},
            ["llm-uk8s:loadBalancerType = 'outer'", "all private", "use loadBalancerType inner"],
        ),
        (
            {
                "serviceType": "LoadBalancer",
                "loadBalancerType": "inner",
                "allowedCidrs": ["10.0.0.0/8", "203.0.113.0/24"],
            },
            ["llm-uk8s:loadBalancerType = 'inner'", "203.0.113.0/24", "use loadBalancerType outer"],
        ),
        ({"modelRepoId": "chatglm2"}, ["llm-uk8s:modelRepoId = 'chatglm2'", "org/name"]),
        ({"inferenceImage": "repo/server:latest"}, ["llm-uk8s:inferenceImage", ":latest"]),
        ({"inferenceImage": "repo/server"}, ["llm-uk8s:inferenceImage", "explicit tag"]),
        ({"nodePort": 8080}, ["llm-uk8s:nodePort = '8080'", "30000"]),
        ({"serviceType": "Ingress"}, ["llm-uk8s:serviceType = 'Ingress'", "'NodePort'"]),
        ({"inferenceMemory": "lots"}, ["llm-uk8s:inferenceMemory = 'lots'"]),
        ({"gpuDriverMode": "magic"}, ["llm-uk8s:gpuDriverMode = 'magic'", "'preinstalled'"]),
        ({"masterCpu": 3}, ["llm-uk8s:masterCpu = '3'", "from 2 to 64 in steps of 2"]),
        ({"platfrom": "local"}, ["llm-uk8s:platfrom is not a known key"]),
        (
            {"natBandwidthMbps": 0},
            ["llm-uk8s:natBandwidthMbps = '0'", "a whole number from 1 to 10000"],
        ),
        ({"natInternetType": "Cable"}, ["llm-uk8s:natInternetType = 'Cable'", "'International'"]),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(overrides: dict, expected: list[str]) -> None:
    found = problems(**overrides)
    text = "\n".join(found)
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_all_field_problems_are_reported_together() -> None:
    found = problems(gpuType="X", chargeType="Never", namespace="Bad_NS")
    assert len(found) == 3


def test_local_platform_refuses_gpu_settings() -> None:
    found = problems("local", gpuDriverMode="preinstalled", gpusPerReplica=1)
    assert any("gpuDriverMode" in p and "none" in p for p in found)
    assert any("gpusPerReplica" in p and "CPU" in p for p in found)


def test_gpu_stack_cannot_serve_the_bundled_demo_model() -> None:
    assert any("modelSource = 'bundled'" in p for p in problems(modelSource="bundled"))


def test_unenforced_source_ranges_are_refused() -> None:
    found = problems(allowedCidrs=["10.0.0.0/8"], serviceType="ClusterIP", networkPolicy=False)
    assert any("allowedCidrs" in p for p in found)


def test_derived_values() -> None:
    config = parse(raw_values("prod"), "prod")
    assert config.resolved_cluster_name == "llm-uk8s-prod"
    assert config.node_labels == {"llm-uk8s/gpu": "true", "llm-uk8s/env": "prod"}
    assert config.gpu_taint_keys == ["nvidia.com/gpu"]
    assert config.load_balancer_type == "inner"  # prod admits only private sources


def test_every_gpu_taint_key_is_tolerated_not_only_the_first() -> None:
    taints = ["nvidia.com/gpu=present:NoSchedule", "example.com/dedicated=llm:NoSchedule"]
    config = parse(raw_values("dev", gpuNodeTaints=taints), "dev")
    assert config.gpu_taint_keys == ["nvidia.com/gpu", "example.com/dedicated"]
    # No taint configured: still the conventional key (one default, in the config).
    assert parse(raw_values("dev", gpuNodeTaints=[]), "dev").gpu_taint_keys == ["nvidia.com/gpu"]


def test_matching_load_balancer_settings_are_accepted() -> None:
    public = parse(
        raw_values("dev", serviceType="LoadBalancer", allowedCidrs=["203.0.113.0/24"]), "dev"
    )
    assert public.load_balancer_type == "outer"  # the default
    anyone = parse(raw_values("dev", serviceType="LoadBalancer"), "dev")
    assert anyone.allowed_cidrs == []


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("uhub.service.ucloud.cn/llm-uk8s/server:0.1.0", True),
        ("reg/server@sha256:" + "a" * 64, True),
        ("Reg/Server:0.1.0", False),  # the components used to accept it, the config not
        ("reg/server", False),
        ("reg/server:latest", False),
        ("reg/server@sha256:12", False),
        ("localhost:5000/server", False),
    ],
)
def test_config_and_components_refuse_the_same_images(image: str, pinned: bool) -> None:
    """One rule (conventions.pinned_image_problem) for the config and the components."""
    if pinned:
        parse(raw_values("dev", inferenceImage=image), "dev")
        conventions.require_pinned_image("image", image)
    else:
        assert any("llm-uk8s:inferenceImage" in p for p in problems(inferenceImage=image))
        with pytest.raises(ConfigError, match=r"^image: invalid value"):
            conventions.require_pinned_image("image", image)


@pytest.mark.parametrize(
    ("revision", "pinned"),
    [("a" * 40, True), ("v1.0", True), ("v2", True), ("main", False), ("A" * 40, False)],
)
def test_config_and_model_store_share_the_revision_rule(revision: str, pinned: bool) -> None:
    store = ModelFetchArgs(
        namespace="llm",
        model_name="m",
        nfs_server="10.0.0.5",
        repo_id="o/m",
        revision=revision,
        fetch_image="reg/server:0.1.0",
    )
    if pinned:
        parse(raw_values("dev", modelRevision=revision), "dev")
        store.validate()
    else:
        assert any("modelRevision" in p for p in problems(modelRevision=revision))
        with pytest.raises(ConfigError, match=r"^revision: "):
            store.validate()


def test_config_takes_quantity_and_dns_label_rules_from_the_helpers() -> None:
    fields = stack_config.StackConfig.model_fields

    def pattern(name: str) -> str:
        return next(m.pattern for m in fields[name].metadata if hasattr(m, "pattern"))

    assert pattern("namespace") == conventions.DNS_LABEL.pattern
    assert pattern("inference_memory") == pattern("inference_cpu") == conventions.QUANTITY.pattern


def test_descriptions_match_what_the_config_accepts() -> None:
    """The docs once promised 'a 40-character commit sha' (tags are accepted too), 'empty means
    everyone' and 'in-cluster monitoring' (a NetworkPolicy admits only the namespace)."""
    schema = project_file()["config"]
    revision = schema["modelRevision"]["description"]
    assert "commit" in revision and "v1.0" in revision
    assert "same namespace" in schema["networkPolicy"]["description"]
    assert "same namespace" in schema["allowedCidrs"]["description"]


def test_credentials_in_plain_config_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"ucloud:privateKey is set in plain text.*--secret"):
        stack_config.check_secrets(
            is_secret=lambda k: False, present=lambda k: k == "ucloud:privateKey"
        )
    stack_config.check_secrets(is_secret=lambda k: True, present=lambda k: True)


def test_readme_explains_the_keys_users_must_choose() -> None:
    """The ULB kind and the download budget are decisions a user makes per stack; NetworkPolicy
    on UK8S needs Calico policy-only installed first, or the policy is silently not enforced."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for needed in ("loadBalancerType", "modelFetchTimeoutSeconds", "Calico", "policy-only"):
        assert needed in readme, needed


@pytest.mark.parametrize("namespace", ["default", "kube-system", "kube-public", "kube-node-lease"])
def test_reserved_namespaces_are_refused(namespace: str) -> None:
    assert any(
        p.startswith(f"llm-uk8s:namespace = '{namespace}'") and "reserved" in p
        for p in problems(namespace=namespace)
    )


def test_credentials_in_the_hub_url_are_refused_without_echoing_them() -> None:
    (found,) = problems(hubEndpoint="https://me:s3cret@mirror.example.com/hub")
    assert "hubToken" in found and "--secret" in found
    assert "s3cret" not in found and "me:" not in found
    parse(raw_values("dev", hubEndpoint="https://mirror.example.com/hub"), "dev")


def test_a_misspelt_key_gets_a_suggestion() -> None:
    found = problems(gpuTpye="T4")
    assert "llm-uk8s:gpuTpye is not a known key; did you mean llm-uk8s:gpuType?" in found


@pytest.mark.parametrize("prefix", ["llm_uk8s", "llm-uk8", "LLM-UK8S", "llmuk8s"])
def test_keys_under_a_misspelt_project_prefix_are_refused(prefix: str) -> None:
    (found,) = stack_config.misspelt_prefix_problems([f"{prefix}:gpuType", "ucloud:region"])
    assert found.startswith(f"{prefix}:gpuType is not read") and "llm-uk8s:gpuType" in found


def test_a_misspelt_prefix_fails_the_real_program() -> None:
    from tools.plan import plan_stack

    with pytest.raises(Exception, match=r"llm_uk8s:gpuType is not read"):
        plan_stack("dev", overrides={"llm_uk8s:gpuType": "A100"})


def test_replicas_share_the_inference_components_range() -> None:
    from components.k8s.inference import InferenceServiceArgs

    for replicas in (0, 1, 64, 65):
        args = InferenceServiceArgs(
            namespace="llm",
            image="reg/server:0.1.0",
            model_claim_name="c",
            served_model_name="m",
            replicas=replicas,
            gpus_per_replica=0,
        )
        try:
            args.validate()
            component_ok = True
        except ConfigError:
            component_ok = False
        try:
            parse(raw_values("local", replicas=replicas), "local")
            config_ok = True
        except ConfigError:
            config_ok = False
        assert component_ok == config_ok == (1 <= replicas <= 64), replicas


def test_pods_must_fit_the_node_less_the_reserve() -> None:
    found = problems(inferenceCpu="8", inferenceMemory="32Gi")
    assert any(p.startswith("llm-uk8s:inferenceCpu = '8'") and "7300m" in p for p in found)
    assert any(p.startswith("llm-uk8s:inferenceMemory = '32Gi'") and "29105Mi" in p for p in found)
    parse(raw_values("dev", inferenceCpu="7300m", inferenceMemory="29105Mi"), "dev")


def test_a_ucloud_stack_without_a_node_for_the_workload_is_refused() -> None:
    assert any("gpuNodeCount = 0" in p for p in problems(gpuNodeCount=0))
    found = problems(gpusPerReplica=0)  # CPU pods cannot land on tainted GPU nodes
    assert any("gpusPerReplica = 0" in p and "gpuNodeTaints" in p for p in found)


def test_zones_must_be_published_and_sell_the_gpu_type() -> None:
    assert any("cn-bj2-04" in p and "cn-bj2-05" in p for p in problems(zones=["cn-bj2-04"]))
    found = problems(zones=["cn-bj2-02"])  # T4 is sold only in cn-bj2-05
    assert any(p.startswith("llm-uk8s:zones") and "sold only in cn-bj2-05" in p for p in found)
    parse(raw_values("dev", zones=["cn-bj2-02"], gpuType="T4S"), "dev")
    assert any("retired" in p for p in problems(gpuType="V100"))


def test_field_and_cross_field_problems_come_in_one_message() -> None:
    found = problems(chargeType="Never", zones=["cn-bj2-02"], inferenceCpu="64")
    assert any(p.startswith("llm-uk8s:chargeType = 'Never'") for p in found)
    assert any(p.startswith("llm-uk8s:zones") for p in found)
    assert any(p.startswith("llm-uk8s:inferenceCpu") for p in found)


def test_undocumented_gpu_zones_are_a_warning() -> None:
    prod = parse(raw_values("prod"), "prod")
    assert any("A800" in w and "unconfirmed" in w for w in prod.warnings())
    dev = parse(raw_values("dev", inferenceImage="registry.example/llm:1.0"), "dev")
    assert dev.warnings() == []


def test_the_default_image_is_a_warning_until_changed() -> None:
    """Pulumi.yaml's inferenceImage may not exist: preview says so while it is the default."""
    default = parse(raw_values("dev"), "dev").warnings()
    assert [w for w in default if "inferenceImage" in w and "make push" in w]
    mine = parse(raw_values("dev", inferenceImage="registry.example/llm:1.0"), "dev")
    assert not [w for w in mine.warnings() if "inferenceImage" in w]
