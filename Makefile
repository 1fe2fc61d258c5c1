.PHONY: demo test fast lint bench

demo:   ## set up and run the example flow on local Spark
	scripts/demo.sh

test:   ## set up and run the whole test suite
	scripts/test.sh

fast:   ## only the tests that need neither Spark nor a browser
	FAST=1 scripts/test.sh

lint:
	.venv/bin/ruff check jupyter_dataflow tests bench
	.venv/bin/mypy
