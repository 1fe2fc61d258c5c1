"""Credential-like settings are recognised, redacted to `${ENV}` references and resolved back."""

from __future__ import annotations

import pytest

from jupyter_dataflow.core.errors import ConfigError
from jupyter_dataflow.export import secrets


@pytest.mark.parametrize("key", [
    "spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.access.key", "spark.hadoop.fs.s3a.session.token",
    "password", "spark.ssl.keyStorePassword", "spark.authenticate.secret", "fs.azure.account.key.sas.token",
    "spark.hadoop.google.cloud.auth.service.account.json.credentials", "apiKey", "spark.kubernetes.authenticate.oauthToken",
])
def test_credentials_are_recognised(key: str) -> None:
    assert secrets.looks_like_credential(key)


@pytest.mark.parametrize("key", [
    "spark.sql.shuffle.partitions", "spark.hadoop.fs.s3a.aws.credentials.provider",
    "spark.kubernetes.authenticate.oauthTokenFile", "spark.kubernetes.authenticate.caCertFile",
    "spark.ssl.keyStore", "header", "spark.executor.memory", "spark.hadoop.fs.s3a.secret.key.path",
])
def test_ordinary_settings_and_pointers_to_credentials_are_kept(key: str) -> None:
    assert not secrets.looks_like_credential(key)


def test_redact_replaces_values_with_environment_references_in_key_order() -> None:
    values = {"spark.sql.shuffle.partitions": "4", "spark.hadoop.fs.s3a.secret.key": "s3cr3t",
              "spark.hadoop.fs.s3a.access.key": "AKIA"}
    out, refs = secrets.redact(values, "spark conf")
    assert out == {"spark.hadoop.fs.s3a.access.key": "${SPARK_HADOOP_FS_S3A_ACCESS_KEY}",
                   "spark.hadoop.fs.s3a.secret.key": "${SPARK_HADOOP_FS_S3A_SECRET_KEY}",
                   "spark.sql.shuffle.partitions": "4"}
    assert [r.key for r in refs] == ["spark.hadoop.fs.s3a.access.key", "spark.hadoop.fs.s3a.secret.key"]
    assert all(r.where == "spark conf" for r in refs)


def test_an_existing_reference_keeps_its_variable() -> None:
    out, refs = secrets.redact({"password": "${DB_PASSWORD}"}, "stage 'x' option")
    assert out == {"password": "${DB_PASSWORD}"}
    assert refs[0].env == "DB_PASSWORD"


def test_env_names_are_valid_identifiers() -> None:
    assert secrets.env_name("spark.hadoop.fs.s3a.secret.key") == "SPARK_HADOOP_FS_S3A_SECRET_KEY"
    assert secrets.env_name("password", prefix="DATAFLOW_orders") == "DATAFLOW_ORDERS_PASSWORD"
    assert secrets.env_name("1.token") == "_1_TOKEN"


def test_resolve_reads_the_environment_and_names_every_missing_variable() -> None:
    values = {"a": "${ONE}", "b": "x-${TWO}-y", "c": "plain"}
    assert secrets.resolve(values, {"ONE": "1", "TWO": "2"}) == {"a": "1", "b": "x-2-y", "c": "plain"}
    with pytest.raises(ConfigError, match="ONE, TWO"):
        secrets.resolve(values, {})
