.PHONY: test bench run

# Every check and test: gofmt, go vet, staticcheck, go test -race.
test:
	./scripts/test.sh

# Benchmarks; figures go to BENCHMARKS.md.
bench:
	go test -run '^$$' -bench . -benchmem ./...

run:
	go run ./examples/hello
