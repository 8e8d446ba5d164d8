"""What the OpenSearch node offers decides the store's lifecycle and codec; checked for real.

* ISM: with the Index State Management plugin on the node, ``store init`` (lifecycle
  ``auto``) installs the policy and the first span index is managed by it. Without the
  plugin that test is skipped, and the detection test checks the fallback instead.
* zstd: the ``zstd`` / ``zstd_no_dict`` codecs (custom-codecs plugin) are accepted exactly
  when ``has_zstd`` says the node has them (then ``store_setup`` picks zstd); otherwise
  OpenSearch refuses them.

Everything lives under a private ``store_index_prefix`` and is removed afterwards.
"""

from __future__ import annotations

import copy
import uuid

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from pipeline.cli import main
from pipeline.config.settings import Settings
from pipeline.local.run import wait_until
from pipeline.store import lifecycle
from pipeline.store.indices import store_names
from pipeline.store.lifecycle import (
    LifecycleError,
    choose_lifecycle,
    has_ism,
    has_zstd,
    ism_policy,
    ism_policy_id,
    node_plugins,
)
from pipeline.store.setup import ensure_store

pytestmark = pytest.mark.integration

ISM_POLICY_SETTING = "index.plugins.index_state_management.policy_id"
ZSTD_CODECS = ("zstd", "zstd_no_dict")


def private_store(base: Settings, **overrides) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return base.model_copy(update={"store_index_prefix": f"ism-{tag}-", **overrides})


def drop_store(client: OpenSearch, settings: Settings) -> None:
    prefix = settings.store_index_prefix
    assert prefix, "never drop the shared store"
    client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
    client.indices.delete_index_template(name=f"{prefix}*", ignore=404)
    if has_ism(node_plugins(client)):
        policy = ism_policy_id(store_names(settings).span_alias)
        path = f"{lifecycle.ISM_POLICIES}/{policy}"
        client.transport.perform_request("DELETE", path, params={"ignore": 404})


def explain(client: OpenSearch, index: str) -> dict:
    return client.transport.perform_request("GET", f"/_plugins/_ism/explain/{index}")


# --- ISM ------------------------------------------------------------------------------


def stored_form(policy: dict, policy_id: str) -> dict:
    """A policy as ISM 2.19 returns it: copy_alias on rollovers, timestamps, ids added."""
    stored = copy.deepcopy(policy)
    for state in stored["states"]:
        for action in state["actions"]:
            if "rollover" in action:
                action["rollover"].setdefault("copy_alias", False)
    for template in stored["ism_template"]:
        template["last_updated_time"] = 1_700_000_000_000
    extra = {"last_updated_time": 1_700_000_000_000, "schema_version": 21}
    return {"policy_id": policy_id, "error_notification": None, **extra, **stored}


def test_a_stored_policy_with_ism_defaults_counts_as_unchanged():
    """Fields ISM fills in with its defaults are no change; anything else is."""
    alias = "x-otel-v1-apm-span"
    wanted = ism_policy(Settings(store_index_prefix="x-"), alias)["policy"]
    stored = stored_form(wanted, ism_policy_id(alias))
    assert not lifecycle._policy_differs(stored, wanted)

    # An action sent without retry is stored with ISM's default retry.
    bare = copy.deepcopy(wanted)
    del bare["states"][0]["actions"][0]["retry"]
    stored_bare = stored_form(bare, ism_policy_id(alias))
    default_retry = {"count": 3, "backoff": "exponential", "delay": "1m"}
    stored_bare["states"][0]["actions"][0]["retry"] = default_retry
    assert not lifecycle._policy_differs(stored_bare, bare)

    changed = copy.deepcopy(stored)
    changed["states"][0]["transitions"][0]["conditions"]["min_rollover_age"] = "1s"
    assert lifecycle._policy_differs(changed, wanted)
    changed = copy.deepcopy(stored)
    changed["states"][0]["actions"][0]["rollover"]["copy_alias"] = True  # not the default
    assert lifecycle._policy_differs(changed, wanted)
    changed = copy.deepcopy(stored)
    changed["states"][0]["actions"][0]["retry"]["count"] = 1
    assert lifecycle._policy_differs(changed, wanted)
    changed = copy.deepcopy(stored)
    changed["ism_template"][0]["index_patterns"] = ["y-*"]
    assert lifecycle._policy_differs(changed, wanted)
    changed = copy.deepcopy(stored)
    changed["ism_template"][0]["priority"] = 1
    assert lifecycle._policy_differs(changed, wanted)


def test_lifecycle_follows_the_node_plugins(stack: Settings, opensearch: OpenSearch):
    plugins = node_plugins(opensearch)
    expected = "ism" if has_ism(plugins) else "worker"
    assert choose_lifecycle(private_store(stack, store_lifecycle="auto"), plugins) == expected
    assert choose_lifecycle(private_store(stack, store_lifecycle="worker"), plugins) == "worker"
    if has_ism(plugins):
        return
    forced = private_store(stack, store_lifecycle="ism")
    try:
        with pytest.raises(LifecycleError, match="no Index State Management plugin"):
            ensure_store(opensearch, forced)
        # Refused before anything was installed.
        names = store_names(forced)
        assert not opensearch.indices.exists_index_template(name=names.span_template)
        assert not opensearch.indices.exists_alias(name=names.span_alias)
    finally:
        drop_store(opensearch, forced)


def test_store_init_puts_the_write_index_under_the_ism_policy(
    stack: Settings, opensearch: OpenSearch
):
    if not has_ism(node_plugins(opensearch)):
        pytest.skip(
            f"{stack.opensearch_url} has no Index State Management plugin (see _cat/plugins); "
            "the worker lifecycle is tested in test_store.py"
        )
    settings = private_store(stack, store_lifecycle="auto")
    names = store_names(settings)
    alias, index = names.span_alias, names.first_span_index
    policy_id = ism_policy_id(alias)
    args = [
        "store",
        "init",
        "--opensearch-url",
        stack.opensearch_url,
        "--store-index-prefix",
        settings.store_index_prefix,
        "--store-lifecycle",
        "auto",
    ]
    try:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "lifecycle    ISM policy" in result.output
        assert f"span alias   {alias} -> {index}" in result.output

        stored = opensearch.transport.perform_request(
            "GET", f"{lifecycle.ISM_POLICIES}/{policy_id}"
        )["policy"]
        assert stored["policy_id"] == policy_id
        assert [t["index_patterns"] for t in stored["ism_template"]] == [[f"{alias}-*"]]
        assert not lifecycle._policy_differs(stored, ism_policy(settings, alias)["policy"])

        flat = opensearch.indices.get_settings(index=index, flat_settings=True)[index]["settings"]
        assert flat["index.plugins.index_state_management.rollover_alias"] == alias

        # The ism_template attaches the policy when the index is created; ISM's job then
        # initializes it (job_interval). The managed state is enough: no waiting for rollover.
        def managed() -> bool:
            entry = explain(opensearch, index).get(index, {})
            return entry.get(ISM_POLICY_SETTING) == policy_id and entry.get("enabled") is True

        assert wait_until(managed, "ISM manages the write index", 60), explain(opensearch, index)

        # Run again: nothing to create, the stored policy is recognised as ours.
        again = CliRunner().invoke(main, args)
        assert again.exit_code == 0, again.output
        assert "created" not in again.output
        assert lifecycle.install_ism_policy(opensearch, settings, alias) == "unchanged"
    finally:
        drop_store(opensearch, settings)


# --- codecs ---------------------------------------------------------------------------


def test_zstd_codecs_are_accepted_exactly_when_the_plugin_is_loaded(
    stack: Settings, opensearch: OpenSearch
):
    zstd = has_zstd(node_plugins(opensearch))
    probe = f"codec-probe-{uuid.uuid4().hex[:8]}"
    try:
        for codec in ZSTD_CODECS:
            body = {
                "settings": {
                    "index.number_of_replicas": 0,
                    "index.codec": codec,
                    "index.codec.compression_level": 3,
                }
            }
            if zstd:
                opensearch.indices.create(index=probe, body=body)
                flat = opensearch.indices.get_settings(index=probe, flat_settings=True)
                got = flat[probe]["settings"]
                assert got["index.codec"] == codec
                assert got["index.codec.compression_level"] == "3"
                opensearch.indices.delete(index=probe)
            else:
                with pytest.raises(RequestError) as refused:
                    opensearch.indices.create(index=probe, body=body)
                assert "unknown value for [index.codec]" in str(refused.value.info)
                assert not opensearch.indices.exists(index=probe)

        # Core codecs always work; compression_level is only for the zstd (and QAT) codecs.
        opensearch.indices.create(
            index=probe,
            body={"settings": {"index.codec": "best_compression", "index.number_of_replicas": 0}},
        )
        opensearch.indices.delete(index=probe)
        with pytest.raises(RequestError) as refused:
            opensearch.indices.create(
                index=probe,
                body={
                    "settings": {
                        "index.codec": "best_compression",
                        "index.codec.compression_level": 3,
                    }
                },
            )
        assert "Compression level cannot be set" in str(refused.value.info)
    finally:
        opensearch.indices.delete(index=probe, ignore_unavailable=True)
