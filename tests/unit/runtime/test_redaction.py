"""Secrets in Spark conf never reach an artifact."""

from __future__ import annotations

from sparkml_template.runtime.redaction import REDACTED, redact_conf


def test_default_pattern_redacts_keys_and_values():
    conf = redact_conf(
        [
            ("spark.hadoop.fs.s3a.secret.key", "abc"),
            ("spark.hadoop.fs.s3a.access.key", "AKIA"),
            ("spark.executorEnv.DB_PASSWORD", "pw"),
            ("spark.some.url", "https://x?token=zzz"),
            ("spark.app.name", "app"),
        ]
    )
    assert conf["spark.app.name"] == "app"
    assert all(v == REDACTED for k, v in conf.items() if k != "spark.app.name")


def test_user_pattern_adds_to_the_default():
    conf = redact_conf([("spark.my.credential", "c"), ("spark.x.secret", "s")], r"(?i)credential")
    assert conf == {"spark.my.credential": REDACTED, "spark.x.secret": REDACTED}


def test_pattern_python_cannot_compile_falls_back_to_default():
    conf = redact_conf([("spark.x.password", "p"), ("a", "b")], r"(?<name>java-only)")
    assert conf == {"a": "b", "spark.x.password": REDACTED}
