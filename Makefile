.PHONY: test bench run

# Every check and test: gofmt, go vet, staticcheck, go test -race.
test:
	./scripts/test.sh

# Benchmarks; figures go to BENCHMARKS.md.
bench:
	go test -run '^$$' -bench . -benchmem ./...

# The dev server: demos, API and web UI on http://127.0.0.1:7070/.
run:
	go run ./cmd/docket dev
