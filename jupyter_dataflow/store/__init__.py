"""The home on disk: the metadata database (the index) and the object store (blobs).

Only this package touches the metadata database and the store's files. Nothing here
imports pyspark.
"""
