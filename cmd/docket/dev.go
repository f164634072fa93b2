package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/internal/demo"
	"github.com/docket-run/docket/internal/version"
	"github.com/docket-run/docket/server"
	"github.com/docket-run/docket/store/postgres"
)

const defaultAddr = "127.0.0.1:7070"

// runDev runs the dev server: an engine with workers on a SQLite file, the
// demo graphs, and the API and web UI, until ctx ends.
func runDev(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "dev")
	db := fs.String("db", "docket-dev.db", "the SQLite file executions live in")
	addr := fs.String("addr", defaultAddr, "where to serve the API and web UI (another port is chosen if it is taken)")
	demos := fs.Bool("demos", true, "start a few demo executions when none is running")
	workers := fs.Int("workers", 8, "how many steps run at a time")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	set := demo.New(demo.Options{})
	eng, err := docket.Open(ctx, docket.Config{
		Store:           "sqlite:" + *db,
		Graphs:          set.Graphs(),
		Workers:         *workers,
		ShutdownTimeout: 3 * time.Second,
		Logger:          logger(e.stderr),
	})
	if err != nil {
		return fmt.Errorf("opening %s: %w", *db, err)
	}
	defer eng.Close()
	return serve(ctx, e, eng, *addr, demo.Examples(), func(url string) error {
		fmt.Fprintf(e.stdout, "Docket dev server %s\n\n  web UI   %s\n  API      %sapi/v1/ (openapi.yaml there)\n  store    sqlite:%s\n\n",
			version.String(), url, url, *db)
		if !*demos {
			return nil
		}
		n, err := demo.NextLaunch(ctx, eng)
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintln(e.stdout, "Executions from an earlier run are still in flight and carry on; no new demos started.")
		} else {
			ids, err := set.Launch(ctx, eng, n)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Started demo executions: %s\n", strings.Join(ids, ", "))
			fmt.Fprintf(e.stdout, "%s waits for a decision; send it from its page or with\n  docket signal %s %s '{\"approved\": true, \"by\": \"you\"}'\n",
				ids[3], ids[3], demo.DecisionSignal)
		}
		fmt.Fprintln(e.stdout, "\nCtrl-C stops the server; running it again resumes what is in flight.")
		return nil
	})
}

// runServer serves the API and web UI over an existing store, as a client
// only: the graphs' own processes run the workers.
func runServer(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "server")
	storeURL := fs.String("store", e.getenv("DOCKET_STORE"), "the store, e.g. sqlite:path/to/docket.db ($DOCKET_STORE)")
	addr := fs.String("addr", defaultAddr, "where to serve the API and web UI (another port is chosen if it is taken)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *storeURL == "" {
		return usagef("--store is required, e.g. --store sqlite:docket.db")
	}
	eng, err := docket.Open(ctx, docket.Config{Store: *storeURL, Workers: -1, Logger: logger(e.stderr)})
	if err != nil {
		return fmt.Errorf("opening store %s: %w", *storeURL, err)
	}
	defer eng.Close()
	return serve(ctx, e, eng, *addr, nil, func(url string) error {
		fmt.Fprintf(e.stdout, "Docket server %s over %s (no workers: the graphs' own processes run them)\n\n  web UI   %s\n  API      %sapi/v1/\n\n",
			version.String(), *storeURL, url, url)
		return nil
	})
}

// logger logs the engine's warnings and errors as text.
func logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// serve serves eng's API and UI on addr until ctx ends, calling started
// with the URL once it listens, and then shuts down in order: the HTTP
// server first (ending event streams), the engine after (by the caller).
func serve(ctx context.Context, e *env, eng *docket.Engine, addr string, examples map[string]json.RawMessage, started func(url string) error) error {
	srv, err := server.New(server.Config{Engine: eng, Examples: examples, Version: version.String(),
		Logger: logger(e.stderr)})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(addr)
		fmt.Fprintf(e.stderr, "docket: %s is in use; using another port\n", addr)
		ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
	}
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	hs.RegisterOnShutdown(srv.Close)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	url := "http://" + displayAddr(ln.Addr()) + "/"
	if err := started(url); err != nil {
		_ = hs.Close()
		<-served
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	fmt.Fprintln(e.stdout, "\nshutting down…")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	<-served
	if err != nil {
		return fmt.Errorf("stopping the HTTP server: %w", err)
	}
	return nil
}

// displayAddr shows a listening address as a browser would use it.
func displayAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	return ta.String()
}

// runMigrate brings a store's schema up to date, as an operator's step of
// its own (engines also do it when they open a store).
func runMigrate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "migrate")
	storeURL := fs.String("store", e.getenv("DOCKET_STORE"), "the store, e.g. postgres://user@host/db or sqlite:path/to/docket.db ($DOCKET_STORE)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *storeURL == "":
		return usagef("--store is required, e.g. --store postgres://docket@localhost/docket")
	case strings.HasPrefix(*storeURL, "postgres://") || strings.HasPrefix(*storeURL, "postgresql://"):
		if err := postgres.Migrate(ctx, *storeURL); err != nil {
			return fmt.Errorf("migrating %s: %w", *storeURL, err)
		}
		fmt.Fprintf(e.stdout, "schema is at version %d\n", postgres.SchemaVersion())
	default:
		st, err := docket.OpenStore(ctx, *storeURL) // opening migrates
		if err != nil {
			return fmt.Errorf("migrating %s: %w", *storeURL, err)
		}
		if err := st.Close(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "schema is up to date\n")
	}
	return nil
}
