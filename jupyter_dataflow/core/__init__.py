"""Pure definitions: stages, the graph, normalization and fingerprints.

Nothing here touches Spark, files or the metadata database; everything is a value
that can be built and tested in microseconds.
"""
