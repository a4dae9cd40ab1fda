"""The leading bytes that identify the product's file formats.

Kept here, apart from the readers, so that a light command (``direct-run``) can tell a user that
they gave it the wrong kind of file without importing the part that reads that kind.
"""

# docs/model-file.md §1: the trainer's model file (``model.direct``).
MODEL_FILE_MAGIC = b"\x89DIRECT\n"

# docs/model-format.md §2: the packed blob (``.bin``, the C arrays of ``.h``).
BLOB_MAGIC = b"DIRQ"
