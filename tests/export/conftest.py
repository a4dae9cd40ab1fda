"""Shared builders for the export tests."""

from __future__ import annotations


def mixed_schema():
    """An input schema (docs/model-format.md §10) of every kind and policy, 8 inputs: a plain column, a
    3-level categorical one, a numeric one with mean-indicator imputation, a 2-level categorical one."""
    from direct_edge.runtime import schema as input_schema

    Column = input_schema.Column
    return input_schema.Schema(
        (
            Column("age", low=-1.0, high=2.0),
            Column("colour", input_schema.CATEGORICAL, levels=("blue", "green", "red")),
            Column("size", missing=input_schema.MEAN_INDICATOR, low=1.0, high=5.0, fill=2.8125),
            Column("sex", input_schema.CATEGORICAL, levels=("f", "m")),
        ),
        "y",
    )


def mixed_blob(b: int = 64, seed: int = 12, with_schema: bool = True):
    """A parsed synthetic rff blob of 8 inputs carrying :func:`mixed_schema` (or, ``with_schema``
    False, the same parameters without it)."""
    from direct_edge.export.packed import synthetic_blob
    from direct_edge.runtime.blob import parse

    schema = mixed_schema() if with_schema else False
    return parse(synthetic_blob("rff", 8, b, 8, seed=seed, exact=True, schema=schema))
