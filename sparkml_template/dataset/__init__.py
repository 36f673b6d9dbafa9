"""The template's dataset machinery: what ``data`` names, the validation job that describes it,
Parquet footers that can stand in for that job, and a content hash for lineage."""
