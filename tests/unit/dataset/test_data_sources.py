"""Where data comes from (dataset/sources.py): paths, URIs and table names resolved to a source
with its format, a missing file in one line, and the digest that follows a file's content."""

from __future__ import annotations

import pytest

from sparkml_template import PROJECT_ROOT
from sparkml_template.contract.dataset import DataSource
from sparkml_template.dataset.sources import content_digest, resolve_source
from sparkml_template.errors import UserError


def test_shipped_data_resolves_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = resolve_source("data/breast_cancer.csv")
    assert source.format == "csv"
    assert source.local_path == PROJECT_ROOT / "data" / "breast_cancer.csv"


@pytest.mark.parametrize(
    ("uri", "fmt"),
    [
        ("s3a://bucket/path/train.csv", "csv"),
        ("dbfs:/mnt/data/train.parquet", "parquet"),
        ("dbfs:/mnt/data/table_dir", "parquet"),
        ("main.default.training_data", "table"),
        ("training_data", "table"),
    ],
)
def test_remote_uris_and_table_names(uri, fmt):
    assert resolve_source(uri) == DataSource(uri, fmt)


def test_missing_local_file_is_one_line():
    with pytest.raises(UserError, match=r"data not found: nowhere/x\.csv"):
        resolve_source("nowhere/x.csv")


def test_content_digest_follows_content(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("x,y\n1,a\n")
    first = content_digest(resolve_source(str(f)))
    assert first == content_digest(resolve_source(str(f)))
    f.write_text("x,y\n2,a\n")
    assert content_digest(resolve_source(str(f))) != first
    assert content_digest(DataSource("s3a://b/k.csv", "csv")) is None
