"""Pure helpers of pipeline.local.stack: config rendering, jar-cache marker, ss parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.settings import Settings
from pipeline.local.stack import (
    STACK_DIR,
    jars_up_to_date,
    kafka_properties,
    opensearch_yml,
    parse_ss_holder,
    pom_digest,
    render_template,
    write_jars_marker,
)


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return dict(pairs)


def test_kafka_properties_follow_the_ports_and_data_dir(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:19092", partitions=3)
    props = _props(kafka_properties(settings, tmp_path / "data"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["num.partitions"] == "3"
    assert props["process.roles"] == "broker,controller"
    assert "$" not in "".join(props.values())


def test_opensearch_yml_follows_the_http_port() -> None:
    text = opensearch_yml(Settings(opensearch_url="http://127.0.0.1:9250"))
    assert "http.port: 9250" in text
    assert "transport.port: 9350" in text
    assert "discovery.type: single-node" in text
    assert "cluster.name: spansieve" in text


def test_render_template_refuses_missing_values() -> None:
    with pytest.raises(KeyError):
        render_template("opensearch/opensearch.yml", host="127.0.0.1")


def test_jar_marker_tracks_the_pom(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>1</project>")
    jars = tmp_path / "jars"
    jars.mkdir()
    assert not jars_up_to_date(jars, pom)
    write_jars_marker(jars, pom)
    assert jars_up_to_date(jars, pom)
    pom.write_text("<project>2</project>")
    assert not jars_up_to_date(jars, pom)


def test_shipped_poms_have_distinct_digests() -> None:
    kafka = pom_digest(STACK_DIR / "kafka" / "pom.xml")
    opensearch = pom_digest(STACK_DIR / "opensearch" / "pom.xml")
    assert len(kafka) == 64
    assert kafka != opensearch


def test_parse_ss_holder() -> None:
    line = 'LISTEN 0 4096 [::ffff:127.0.0.1]:9200 *:* users:(("java",pid=2835,fd=118))'
    assert parse_ss_holder(line) == ("java", 2835)
    assert parse_ss_holder("LISTEN 0 128 0.0.0.0:2024 0.0.0.0:*") is None
