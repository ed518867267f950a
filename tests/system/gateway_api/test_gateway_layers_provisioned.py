"""Layers and provisioned concurrency through boto3's lambda client, as deploy scripts use them."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile

import pytest
from support.fleet import Fleet
from support.gatewaykit import GatewayKit, unique_name

pytestmark = pytest.mark.slow


def zipped(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buf.getvalue()


def test_layers_are_published_listed_used_and_deleted(gw: GatewayKit) -> None:
    lam = gw.client()
    layer = unique_name("lib")
    # Given two versions of a layer published through the API
    first = lam.publish_layer_version(
        LayerName=layer, Content={"ZipFile": zipped({"python/libmod.py": "WHO = 'v1'\n"})},
        CompatibleRuntimes=["python3.11"], Description="first")
    second = lam.publish_layer_version(
        LayerName=layer, Content={"ZipFile": zipped({"python/libmod.py": "WHO = 'v2'\n"})})
    assert (first["Version"], second["Version"]) == (1, 2)
    assert first["LayerVersionArn"].endswith(f":layer:{layer}:1")
    assert first["Content"]["CodeSize"] > 0 and first["CompatibleRuntimes"] == ["python3.11"]
    got = lam.get_layer_version(LayerName=layer, VersionNumber=1)
    assert got["Description"] == "first" and got["LayerArn"].endswith(f":layer:{layer}")
    versions = lam.list_layer_versions(LayerName=layer)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    listed = {x["LayerName"]: x for x in lam.list_layers()["Layers"]}
    assert listed[layer]["LatestMatchingVersion"]["Version"] == 2
    only = lam.list_layers(CompatibleRuntime="python3.11")["Layers"]
    matching = {x["LayerName"]: x for x in only}
    assert matching[layer]["LatestMatchingVersion"]["Version"] == 1
    # When a function is created with version 1 as its layer, it imports from it
    name = unique_name("layered")
    made = lam.create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::000000000000:role/any",
        Handler="app.handler", Layers=[first["LayerVersionArn"]],
        Code={"ZipFile": zipped({"app.py": "import libmod\n\ndef handler(e, c):\n"
                                           "    return libmod.WHO\n"})})
    size = got["Content"]["CodeSize"]
    assert made["Layers"] == [{"Arn": first["LayerVersionArn"], "CodeSize": size}]
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == "v1"
    # And moving it to version 2 runs version 2
    lam.update_function_configuration(FunctionName=name, Layers=[second["LayerVersionArn"]])
    time.sleep(1.1)  # the gateway caches a resolved spec for a second
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == "v2"
    # When version 2 is deleted, the function still runs it, and deleting again is no error
    lam.delete_layer_version(LayerName=layer, VersionNumber=2)
    lam.delete_layer_version(LayerName=layer, VersionNumber=2)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName=layer, VersionNumber=2)
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == "v2"
    # And a hostile archive is refused
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.publish_layer_version(LayerName=layer, Content={"ZipFile": zipped({"../x": "x"})})


def test_provisioned_concurrency_configs_through_the_api(
    gw: GatewayKit, module_fleet: Fleet
) -> None:
    lam = gw.client()
    name = unique_name("prov")
    gw.create(name)
    lam.publish_version(FunctionName=name)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    put = lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    assert put["RequestedProvisionedConcurrentExecutions"] == 1
    assert put["Status"] in ("IN_PROGRESS", "READY")

    def ready() -> bool:
        got = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        allocated = got["AllocatedProvisionedConcurrentExecutions"]
        return bool(got["Status"] == "READY" and allocated == 1)

    module_fleet.wait_for(ready, timeout=60, what="READY through the API")
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed["ProvisionedConcurrencyConfigs"]] \
        == ["1"]
    out = lam.invoke(FunctionName=name, Qualifier="1", LogType="Tail",
                     Payload=json.dumps({"k": 1}))
    tail = base64.b64decode(out["LogResult"]).decode()
    assert "REPORT RequestId" in tail and "Init Duration" not in tail
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
