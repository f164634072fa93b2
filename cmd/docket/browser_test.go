package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// expectedAPIError is the browser's log line for an API call that the test
// makes fail on purpose (a refused update, an unknown execution).
var expectedAPIError = regexp.MustCompile(`Failed to load resource: the server responded with a status of 4\d\d`)

// artifactDir is where the browser test saves its screenshots: $DOCKET_ARTIFACTS
// when set, else a temporary directory. The path is logged.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("DOCKET_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// browser starts headless Chromium for the test; it skips the test when
// Chromium is missing, except on CI, where that is a failure.
func browser(t *testing.T) (context.Context, func()) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing on CI (scripts/chromium.sh installs it): %v", chromiumPath, err)
		}
		t.Skipf("%s is missing; scripts/chromium.sh installs it", chromiumPath)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		acancel()
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx, func() { cancel(); acancel() }
}

// syncBuffer is a strings.Builder safe for the dev server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDev runs `docket dev` in this process on a temporary SQLite file
// and a free port, and returns its URL. It stops at the end of the test.
func startDev(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	db := filepath.Join(t.TempDir(), "dev.db")
	go func() {
		done <- run(ctx, []string{"dev", "--db", db, "--addr", "127.0.0.1:0"}, &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("docket dev exited with %d: %s", code, errOut.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("docket dev did not stop within 15s")
		}
	})
	re := regexp.MustCompile(`web UI\s+(http://\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "Started demo executions") {
			return m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("docket dev exited with %d: %s %s", code, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("docket dev did not print its URL: %q %q", out.String(), errOut.String())
	return ""
}

// page drives one browser tab through the UI.
type page struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	shot int
}

// waitJS waits until the JavaScript expression is true.
func (p *page) waitJS(what, expr string, timeout time.Duration) {
	p.t.Helper()
	if ok, err := p.until(expr, timeout); !ok {
		p.screenshot("timeout")
		p.t.Fatalf("waiting %s for %s (%s): %v", timeout, what, expr, err)
	}
}

// until evaluates expr every 100ms until it is true (true) or timeout
// passes (false, with the last evaluation's error).
func (p *page) until(expr string, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// submit clicks a form's button until the form's output box shows that it
// was sent. A click lands where the button was when chromedp located it;
// a live re-render that moved it in between makes the click miss without
// an error, and a missed click sent nothing, so clicking again is safe.
func (p *page) submit(button, out string) {
	p.t.Helper()
	p.eval(fmt.Sprintf(`(document.querySelector(%q).replaceChildren(), '')`, out))
	for range 5 {
		p.click(button)
		if ok, _ := p.until(fmt.Sprintf(`document.querySelector(%q).childElementCount > 0`, out), 2*time.Second); ok {
			return
		}
	}
	p.screenshot("error")
	p.t.Fatalf("%s: the form's output %s stayed empty after five clicks", button, out)
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.screenshot("error")
		p.t.Fatal(err)
	}
}

// click clicks the element, trying again if live updates replaced it
// between finding and clicking it.
func (p *page) click(sel string) {
	p.t.Helper()
	var err error
	for range 5 {
		if err = chromedp.Do(p.ctx, chromedp.Click(chromedp.CSS(sel))); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.screenshot("error")
	p.t.Fatalf("clicking %s: %v", sel, err)
}

func (p *page) eval(expr string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// screenshot saves the whole page as NN-name.png.
func (p *page) screenshot(name string) {
	p.t.Helper()
	p.shot++
	// A viewport as tall as the page, so sticky parts stay in place.
	height, err := chromedp.Run(p.ctx, chromedp.Evaluate[int64](`document.documentElement.scrollHeight`))
	if err == nil {
		err = chromedp.Do(p.ctx, chromedp.EmulateViewport(1440, max(height, 900)), chromedp.Sleep(150*time.Millisecond))
	}
	var buf []byte
	if err == nil {
		buf, err = chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
		_ = chromedp.Do(p.ctx, chromedp.EmulateViewport(1440, 1000))
	}
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(p.dir, fmt.Sprintf("%02d-%s.png", p.shot, name))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Error(err)
	}
}

// node is a JavaScript expression for the graph box of step in the page.
func node(step string) string {
	return fmt.Sprintf(`document.querySelector('#exec-graph g.node[data-step=%q]')`, step)
}

func state(step, st string) string {
	return fmt.Sprintf(`(%s || {dataset: {}}).dataset.state === %q`, node(step), st)
}

// A newcomer's minute with the dev server, in a real browser: the demos
// appear in the list; an execution started from a graph's page runs and
// finishes in the list; the approval answers an update and a query from
// its forms, waits for its signal and, once the signal is sent from the
// form, its graph turns done; and the trip shows its compensated steps.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test is not short")
	}
	ctx, stop := browser(t)
	defer stop()
	url := startDev(t)
	dir := artifactDir(t)

	var consoleMu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if (m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException) && !expectedAPIError.MatchString(m.Text) {
				consoleMu.Lock()
				problems = append(problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
				consoleMu.Unlock()
			}
		}
	}()

	p := &page{t: t, ctx: ctx, dir: dir}
	start := time.Now()

	// The list shows the demo executions, live.
	p.do(chromedp.Navigate(url))
	p.waitJS("the demos in the list", `document.querySelectorAll('#executions tbody tr[data-id]').length >= 6`, 10*time.Second)
	p.waitJS("the storefront to complete", `!!document.querySelector('#executions tr[data-id="storefront-1"][data-status="completed"]')`, 15*time.Second)
	p.screenshot("executions")

	// The graphs, each drawn.
	p.do(chromedp.Navigate(url + "#/graphs"))
	p.waitJS("the graph cards", `document.querySelectorAll('.graph-card svg.graph').length === 7`, 5*time.Second)
	p.screenshot("graphs")

	// Start a storefront from its graph page.
	p.do(chromedp.Navigate(url + "#/g/storefront"))
	p.waitJS("the start form", `!!document.querySelector('#start-form') && document.querySelectorAll('svg.graph g.node').length === 7`, 5*time.Second)
	p.screenshot("graph-storefront")
	p.do(
		chromedp.SetValue(chromedp.ID("start-id"), "shop-e2e"),
		chromedp.SetValue(chromedp.ID("start-inputs"), `{"demo.CustomerID": "c-e2e"}`),
		chromedp.Click(chromedp.CSS(`#start-form button[type=submit]`)),
	)
	p.waitJS("the new execution's page", `location.hash === '#/e/shop-e2e' && !!document.querySelector('#exec-status')`, 5*time.Second)

	// It finishes in the list.
	p.do(chromedp.Navigate(url + "#/"))
	p.waitJS("shop-e2e in the list", `!!document.querySelector('#executions tr[data-id="shop-e2e"]')`, 5*time.Second)
	p.waitJS("shop-e2e to complete in the list", `!!document.querySelector('#executions tr[data-id="shop-e2e"][data-status="completed"]')`, 15*time.Second)
	p.screenshot("started-and-finished")

	// Its page shows every step done and the result.
	p.click(`#executions tr[data-id="shop-e2e"] a`)
	p.waitJS("shop-e2e's graph, all done", `document.querySelectorAll('#exec-graph g.node[data-state="done"]').length === 6 && !!document.querySelector('#exec-result')`, 5*time.Second)
	if got := p.eval(`document.querySelector('#exec-result pre').textContent`); !strings.Contains(got, "Welcome back, Customer c-e2e") {
		t.Errorf("result shown: %q", got)
	}
	p.click(`#exec-graph g.node[data-step="render-page"]`)
	p.waitJS("the selected step's details", `!!document.querySelector('#selected-step pre')`, 3*time.Second)
	p.screenshot("execution-completed")

	// The approval waits for its decision signal.
	p.do(chromedp.Navigate(url + "#/e/approval-1"))
	p.waitJS("review waiting", state("review", "suspended")+` && document.querySelector('#signal-name').value === 'decision'`, 10*time.Second)
	if got := p.eval(`document.querySelector('#exec-waiting').textContent`); !strings.Contains(got, "review: signal decision") {
		t.Errorf("waiting banner: %q", got)
	}
	// An update and a query from their forms.
	p.do(
		chromedp.SetValue(chromedp.ID("update-name"), "comment"),
		chromedp.SetValue(chromedp.ID("update-request"), `{"by": "e2e", "text": "receipts attached"}`),
	)
	p.submit("#update-send", "#update-result")
	p.waitJS("the update's answer", `(document.querySelector('#update-result .result.ok pre') || {}).textContent === '1'`, 10*time.Second)
	p.do(
		chromedp.SetValue(chromedp.ID("update-request"), `{"by": "e2e", "text": "  "}`),
	)
	p.submit("#update-send", "#update-result")
	p.waitJS("the update's refusal", `(document.querySelector('#update-result .result.error') || {dataset: {}}).dataset.code === 'update_rejected'`, 10*time.Second)
	p.do(
		chromedp.SetValue(chromedp.ID("query-name"), "comments"),
	)
	p.submit("#query-send", "#query-result")
	p.waitJS("the query's answer", `((document.querySelector('#query-result pre') || {}).textContent || '').includes('receipts attached')`, 10*time.Second)
	p.screenshot("approval-waiting")

	// The signal, sent from the form, ends the wait: the graph turns done.
	p.do(
		chromedp.SetValue(chromedp.ID("signal-payload"), `{"approved": true, "by": "e2e"}`),
	)
	p.submit("#signal-send", "#signal-result")
	p.waitJS("the signal's confirmation", `!!document.querySelector('#signal-result .result.ok')`, 5*time.Second)
	p.waitJS("review and settle done", state("review", "done")+" && "+state("settle", "done")+
		` && !!document.querySelector('#exec-status [data-status="completed"]')`, 10*time.Second)
	if got := p.eval(`document.querySelector('#exec-result pre').textContent`); !strings.Contains(got, "approved by e2e") {
		t.Errorf("approval result shown: %q", got)
	}
	if got := p.eval(`[...document.querySelectorAll('#timeline li')].map(li => li.dataset.kind).join(' ')`); !strings.Contains(got, "signal") || !strings.Contains(got, "update") {
		t.Errorf("timeline kinds: %s", got)
	}
	p.screenshot("approval-signalled")

	// The trip failed at the flight and compensated the car and the hotel.
	p.do(chromedp.Navigate(url + "#/e/trip-1"))
	p.waitJS("trip compensated", state("book-car", "compensated")+" && "+state("book-hotel", "compensated")+" && "+state("book-flight", "failed"), 15*time.Second)
	if got := p.eval(`document.querySelector('#exec-error').textContent`); !strings.Contains(got, "no flights") {
		t.Errorf("trip error banner: %q", got)
	}
	p.screenshot("saga-compensated")

	// A child execution links back to its parent.
	p.do(chromedp.Navigate(url + "#/e/" + "card-1%2Fcompose%2Ffr"))
	p.waitJS("the child's page", `!!document.querySelector('#exec-head a[href="#/e/card-1"]') && `+state("translate", "done"), 10*time.Second)

	// An unknown execution is reported, not a blank page.
	p.do(chromedp.Navigate(url + "#/e/no-such-thing"))
	p.waitJS("the not-found error", `(document.querySelector('.result.error') || {dataset: {}}).dataset.code === 'not_found'`, 5*time.Second)

	t.Logf("browser walk took %s", time.Since(start).Round(time.Millisecond))
	consoleMu.Lock()
	defer consoleMu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(problems, "\n"))
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Error("the browser went away")
	}
}
