"""Effects on Spark: the session factory, the task runner, the user-code boundary.

The only package that imports pyspark at module level of its submodules; nothing in
`core` or `plan` may import from here.
"""
