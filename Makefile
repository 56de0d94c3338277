.PHONY: run test bench-lookup bench-outbox

run:   ## web, worker, beat, migrations and demo data (Ctrl-C stops all)
	bin/run

test:  ## the whole suite against PostgreSQL and Redis
	bin/test
