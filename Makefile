.PHONY: run test check bench-lookup bench-outbox

run:   ## web, worker, beat, migrations and demo data (Ctrl-C stops all)
	bin/run

test:  ## the whole suite against PostgreSQL and Redis
	bin/test

check: ## ruff, ruff format --check, the import layers and mypy (CI runs it before the tests)
	bin/check
