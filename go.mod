module github.com/docket-run/docket

go 1.26.0
