"""Every management operation through boto3's lambda client, as a deploy script uses them."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from support.gatewaykit import GatewayKit, unique_name

pytestmark = pytest.mark.slow


def test_create_get_update_and_delete_a_function(gw: GatewayKit) -> None:
    lam = gw.client()
    name = unique_name("crud")
    # Given a function created with its settings
    made = gw.create(name, MemorySize=256, Timeout=7, Description="first",
                     Environment={"Variables": {"GREETING": "hi"}})
    assert made["State"] == "Active" and made["LastUpdateStatus"] == "Successful"
    assert (made["MemorySize"], made["Timeout"], made["Handler"]) == (256, 7, "app.echo")
    # Then GetFunction and GetFunctionConfiguration describe it
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["Environment"]["Variables"] == {"GREETING": "hi"}
    assert got["Configuration"]["CodeSha256"] == made["CodeSha256"]
    config = lam.get_function_configuration(FunctionName=name)
    assert config["Description"] == "first" and config["Runtime"] == "python3.11"
    # When its configuration changes, the updated waiter passes and the change shows
    lam.update_function_configuration(FunctionName=name, Handler="app.plain", Timeout=9)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lam.get_function_configuration(FunctionName=name)["Timeout"] == 9
    time.sleep(1.1)  # the gateway caches a resolved spec for a second
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == {"hello": "world"}
    # When its code changes (and is published at once), the new code runs
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", "def plain(event, context):\n    return 'v2'\n")
    updated = lam.update_function_code(FunctionName=name, ZipFile=buf.getvalue(), Publish=True)
    assert updated["Version"] == "1" and updated["CodeSha256"] != made["CodeSha256"]
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    out = lam.invoke(FunctionName=name, Qualifier="1")
    assert json.loads(out["Payload"].read()) == "v2"
    # When it is deleted, it is gone
    lam.delete_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)


def test_list_functions_pages_through_them(gw: GatewayKit) -> None:
    lam = gw.client()
    names = {unique_name("page") for _ in range(5)}
    for name in names:
        gw.create(name)
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first["NextMarker"]
    seen = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}) for f in page["Functions"]]
    assert names <= set(seen)
    assert len(seen) == len(set(seen))


def test_versions_and_aliases_with_routing_weights(gw: GatewayKit) -> None:
    lam = gw.client()
    name = unique_name("alias")
    gw.create(name)
    # Given two published versions
    assert lam.publish_version(FunctionName=name, Description="one")["Version"] == "1"
    lam.update_function_configuration(FunctionName=name, Timeout=4)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]
    # When an alias routes 30% of calls to version 2
    created = lam.create_alias(
        FunctionName=name, Name="live", FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}},
    )
    assert created["AliasArn"].endswith(f":{name}:live")
    assert lam.get_alias(FunctionName=name, Name="live")["RoutingConfig"] == {
        "AdditionalVersionWeights": {"2": 0.3}
    }
    # Then invocations through it run both versions
    ran = {lam.invoke(FunctionName=name, Qualifier="live")["ExecutedVersion"] for _ in range(40)}
    assert ran == {"1", "2"}
    # When it is repointed without weights, only version 2 runs (after the spec cache)
    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RoutingConfig={"AdditionalVersionWeights": {}})
    assert updated["FunctionVersion"] == "2" and "RoutingConfig" not in updated
    time.sleep(1.1)
    assert {lam.invoke(FunctionName=name, Qualifier="live")["ExecutedVersion"]
            for _ in range(5)} == {"2"}
    lam.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    aliases = lam.list_aliases(FunctionName=name)["Aliases"]
    assert sorted(a["Name"] for a in aliases) == ["live", "old"]
    lam.delete_alias(FunctionName=name, Name="old")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="old")


def test_reserved_concurrency_put_get_delete(gw: GatewayKit) -> None:
    lam = gw.client()
    name = unique_name("conc")
    gw.create(name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert put["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 5
    }
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=100_000)


def test_event_invoke_config_put_get_update_delete(gw: GatewayKit) -> None:
    lam = gw.client()
    name = unique_name("eic")
    gw.create(name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=name)
    put = lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnFailure": {"Destination": "amqp:///failed-events"}},
    )
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 120
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert got["DestinationConfig"] == {"OnFailure": {"Destination": "amqp:///failed-events"}}
    updated = lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert updated["MaximumRetryAttempts"] == 0 and updated["MaximumEventAgeInSeconds"] == 120
    assert updated["DestinationConfig"]["OnFailure"]["Destination"] == "amqp:///failed-events"
    lam.delete_function_event_invoke_config(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=name)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=5)


def test_event_source_mappings_carry_warren_source_uris(gw: GatewayKit) -> None:
    lam = gw.client()
    name = unique_name("esm")
    gw.create(name)
    source = f"redis+stream://127.0.0.1:6379/0/{gw.fleet.prefix}-{name}"
    # Given a mapping created with Lambda's fields
    made = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=source, BatchSize=7,
        MaximumBatchingWindowInSeconds=1, StartingPosition="TRIM_HORIZON",
        FunctionResponseTypes=["ReportBatchItemFailures"], BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=3, Enabled=False,
        FilterCriteria={"Filters": [{"Pattern": '{"data": {"kind": ["order"]}}'}]},
    )
    uuid = made["UUID"]
    assert made["EventSourceArn"] == source and made["State"] == "Disabled"
    assert made["BatchSize"] == 7 and made["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Then it is found by id, by function and by source
    assert lam.get_event_source_mapping(UUID=uuid)["MaximumRetryAttempts"] == 3
    by_function = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [m["UUID"] for m in by_function] == [uuid]
    by_source = lam.list_event_source_mappings(EventSourceArn=source)["EventSourceMappings"]
    assert [m["UUID"] for m in by_source] == [uuid]
    # When it is updated and enabled
    updated = lam.update_event_source_mapping(UUID=uuid, BatchSize=9, Enabled=True)
    assert updated["BatchSize"] == 9 and updated["State"] in ("Enabled", "Enabling")
    # And deleted, it is gone
    lam.delete_event_source_mapping(UUID=uuid)
    wait = time.monotonic() + 20
    while time.monotonic() < wait:
        try:
            lam.get_event_source_mapping(UUID=uuid)
        except lam.exceptions.ResourceNotFoundException:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the mapping was not deleted")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_event_source_mapping(FunctionName=name, EventSourceArn="ftp://nowhere/x")


def test_function_url_configs_create_get_update_list_delete(gw: GatewayKit) -> None:
    lam = gw.client()
    name = unique_name("urlcfg")
    gw.create(name)
    made = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE", Cors={"AllowOrigins": ["https://example.com"]}
    )
    assert made["FunctionUrl"].startswith(gw.endpoint + "/url/")
    assert made["FunctionUrl"].endswith("/") and made["AuthType"] == "NONE"
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    got = lam.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == made["FunctionUrl"]
    assert got["Cors"] == {"AllowOrigins": ["https://example.com"]}
    updated = lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM" and updated["FunctionUrl"] == made["FunctionUrl"]
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [u["FunctionUrl"] for u in listed] == [made["FunctionUrl"]]
    lam.delete_function_url_config(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=name)



def test_ephemeral_storage_through_the_lambda_api(gw: GatewayKit) -> None:
    lam = gw.client()
    name = unique_name("tmpsize")
    made = gw.create(name, EphemeralStorage={"Size": 2048})
    assert made["EphemeralStorage"] == {"Size": 2048}
    lam.update_function_configuration(FunctionName=name, EphemeralStorage={"Size": 10240})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    config = lam.get_function_configuration(FunctionName=name)
    assert config["EphemeralStorage"] == {"Size": 10240}
    plain = gw.create(unique_name("plain"))
    assert plain["EphemeralStorage"] == {"Size": 512}
