// Safemessagehandler manages a cluster's nodes from one long-lived
// execution that many clients update at the same time: Temporal's
// safe-message-handlers sample, on docket.
//
// The execution holds the cluster's state — which job has which nodes —
// and takes three kinds of messages:
//
//   - "assign-nodes" and "delete-job" updates: the caller waits for the
//     answer (the nodes assigned, or freed);
//   - a "state" query, answered without changing anything;
//   - a "shutdown" signal, which ends the execution with a summary.
//
// Handlers are safe because docket applies updates one at a time, on the
// step's own goroutine, at the step's wait points: two assign-nodes
// handlers never run at once, so no lock is needed and no node can be
// handed to two jobs, however many callers there are. Validators refuse
// malformed requests before anything is recorded. Updates and the shutdown
// signal are taken in the order they were sent, so a shutdown sent after
// some updates ends the execution only once they have been applied.
//
// Each change must also reach the cluster itself, a side effect. Docket
// update handlers cannot make durable calls (a docket.Run inside a handler
// is journaled where the step is waiting, and the step fails with a
// non-determinism error), so the handler decides — it picks the nodes and
// records the decision in the state, in a queue of pending operations —
// and the step applies the queue in order, each operation a journaled
// docket.Run. The cluster therefore sees the changes in the order the
// handlers made them, each once. The step waits for the shutdown with
// docket.ReceiveTimeout, so it comes round to apply the queue every
// FlushEvery even while the signal does not come. (docket.ReceiveUnless,
// ended by the update that fills the queue, would be the natural wait, but
// as the library stands its "stopped" outcome is not stored when the
// update that ends it arrives while the step is suspended, and queries and
// validators, which replay the step, would then see stale state.)
//
// The execution lives as long as the cluster does, so it continues as new,
// carrying the state, when docket.ContinueAsNewSuggested says its history is
// long. Updates sent meanwhile are not lost: those the old run did not
// apply wait in the inbox for the new one. The suggestion is read inside a
// docket.Run, so that a re-executed step gets the answer it got the first
// time (see historyFull).
//
//	go run ./examples/safemessagehandler
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docket-run/docket"
)

// Cluster is the execution's state: its input, carried from run to run.
type Cluster struct {
	Nodes        int                 // the cluster's size: nodes node-01 to node-NN
	Jobs         map[string][]string // job -> its nodes
	Pending      []Op                // decided, not yet applied to the cluster
	Ops          int                 // operations applied to the cluster so far
	Answered     int                 // updates answered, over all runs
	ShuttingDown bool
}

// Op is a change to make to the cluster.
type Op struct {
	Seq    int // 1, 2, 3... over the execution's life
	Assign bool
	Job    string
	Nodes  []string
}

// Requests and answers of the updates.
type (
	AssignNodes struct {
		Job   string
		Count int
	}
	Assigned struct {
		Job   string
		Nodes []string
	}
	DeleteJob struct{ Job string }
	Deleted   struct {
		Job   string
		Freed []string
	}
)

// State is the answer of the "state" query.
type State struct {
	Jobs     map[string][]string
	Free     int
	Pending  int
	Answered int
}

// Summary is the execution's result, after the shutdown.
type Summary struct {
	Jobs     map[string][]string
	Free     int
	Ops      int
	Answered int
}

// ClusterAPI is the (simulated) cluster: it holds the node assignments
// for real and refuses to give a node that is held to another job.
type ClusterAPI struct {
	mu         sync.Mutex
	owner      map[string]string
	applied    []int // the Seq of each operation, in the order applied
	violations []string
}

// NewClusterAPI returns an empty cluster.
func NewClusterAPI() *ClusterAPI { return &ClusterAPI{owner: map[string]string{}} }

// Apply makes one change. Applying the same operation twice is harmless.
func (c *ClusterAPI) Apply(_ context.Context, op Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range op.Nodes {
		switch have := c.owner[n]; {
		case op.Assign && have != "" && have != op.Job:
			c.violations = append(c.violations, fmt.Sprintf("%s asked for %s, held by %s", op.Job, n, have))
			return fmt.Errorf("node %s is held by %s", n, have)
		case !op.Assign && have != op.Job:
			c.violations = append(c.violations, fmt.Sprintf("%s freed %s, held by %q", op.Job, n, have))
			return fmt.Errorf("node %s is not held by %s", n, op.Job)
		}
	}
	for _, n := range op.Nodes {
		if op.Assign {
			c.owner[n] = op.Job
		} else {
			delete(c.owner, n)
		}
	}
	if len(c.applied) == 0 || c.applied[len(c.applied)-1] != op.Seq {
		c.applied = append(c.applied, op.Seq)
	}
	return nil
}

// Jobs returns the cluster's assignments, job -> sorted nodes.
func (c *ClusterAPI) Jobs() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	jobs := map[string][]string{}
	for n, j := range c.owner {
		jobs[j] = append(jobs[j], n)
	}
	for _, ns := range jobs {
		sort.Strings(ns)
	}
	return jobs
}

// Applied returns the sequence numbers of the operations applied, in order.
func (c *ClusterAPI) Applied() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.applied)
}

// Violations lists the requests the cluster had to refuse.
func (c *ClusterAPI) Violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.violations)
}

// Options configure NewGraph.
type Options struct {
	// FlushEvery is the longest a decided operation waits before the step
	// applies it to the cluster (default 50ms).
	FlushEvery time.Duration
}

// NewGraph returns the cluster-manager graph; api is the cluster it manages.
func NewGraph(api *ClusterAPI, o Options) *docket.Graph {
	if o.FlushEvery <= 0 {
		o.FlushEvery = 50 * time.Millisecond
	}
	g := docket.NewGraph("clustermanager", docket.Input[Cluster]())
	docket.Register1(g, func(ctx context.Context, c Cluster) (Summary, error) {
		if c.Jobs == nil {
			c.Jobs = map[string][]string{}
		}
		docket.HandleQuery(ctx, "state", func() (State, error) {
			return State{Jobs: c.Jobs, Free: len(c.free()), Pending: len(c.Pending), Answered: c.Answered}, nil
		})
		docket.HandleUpdate(ctx, "assign-nodes", c.assign, c.validateAssign)
		docket.HandleUpdate(ctx, "delete-job", c.deleteJob, c.validateDelete)
		for {
			// What the handlers decided during the last wait reaches the
			// cluster now, in order, each operation once.
			if err := c.applyPending(ctx, api); err != nil {
				return Summary{}, err
			}
			if c.ShuttingDown {
				return Summary{Jobs: c.Jobs, Free: len(c.free()), Ops: c.Ops, Answered: c.Answered}, nil
			}
			full, err := historyFull(ctx)
			if err != nil {
				return Summary{}, err
			}
			if full { // nothing is pending: it was applied just above
				return Summary{}, docket.ContinueAsNew(c)
			}
			// Wait for the shutdown, applying updates meanwhile, and come
			// round every FlushEvery to apply what they decided.
			_, err = docket.ReceiveTimeout[string](ctx, "shutdown", o.FlushEvery)
			switch {
			case errors.Is(err, docket.ErrReceiveTimeout):
			case err != nil:
				return Summary{}, err
			default:
				c.ShuttingDown = true
			}
		}
	}, docket.Name("manage"))
	return g
}

// historyFull reports whether the step should continue as new. The answer
// is recorded with docket.Run, so that a step that re-executes from its
// journal gets the answer it got the first time: ContinueAsNewSuggested
// itself looks at the length of the whole journal, so during a re-execution
// it would already say yes at the first loop iteration, and the step would
// continue with the state of that point, losing the updates applied after
// it. (The Run's function ignores its own context on purpose: the question
// is about the step's journal.)
func historyFull(ctx context.Context) (bool, error) {
	return docket.Run(ctx, "history-check", func(context.Context) (bool, error) {
		return docket.ContinueAsNewSuggested(ctx), nil
	})
}

func (c *Cluster) applyPending(ctx context.Context, api *ClusterAPI) error {
	for len(c.Pending) > 0 {
		op := c.Pending[0]
		what := "free"
		if op.Assign {
			what = "assign"
		}
		_, err := docket.Run(ctx, fmt.Sprintf("op-%d %s %s", op.Seq, what, op.Job), func(ctx context.Context) (struct{}, error) {
			return struct{}{}, api.Apply(ctx, op)
		}, docket.Retry(docket.RetryPolicy{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond}))
		if err != nil {
			return docket.NonRetryable(fmt.Errorf("the cluster refused operation %d: %w", op.Seq, err))
		}
		c.Pending, c.Ops = c.Pending[1:], c.Ops+1
	}
	return nil
}

// free lists the nodes no job holds, in order.
func (c *Cluster) free() []string {
	held := map[string]bool{}
	for _, ns := range c.Jobs {
		for _, n := range ns {
			held[n] = true
		}
	}
	var free []string
	for i := 1; i <= c.Nodes; i++ {
		if n := fmt.Sprintf("node-%02d", i); !held[n] {
			free = append(free, n)
		}
	}
	return free
}

// The validators refuse what is wrong whatever the state: a missing job
// name, more nodes than the cluster has, any request once the cluster is
// shutting down. They run on a replay of the step, which may lag behind it
// — as the library stands, a replay that races a continue-as-new can even
// combine the old run's input with the new run's history — so what depends
// on the state (does the job exist, are enough nodes free) is left to the
// handler, which sees the state as it is when the update is applied and
// answers with an error.

func (c *Cluster) validateAssign(r AssignNodes) error {
	switch {
	case r.Job == "":
		return errors.New("a job name is needed")
	case r.Count < 1 || r.Count > c.Nodes:
		return fmt.Errorf("%d nodes asked for; the cluster has %d", r.Count, c.Nodes)
	case c.ShuttingDown: // once true, true for good: a lagging replay can only miss it
		return errors.New("the cluster is shutting down")
	}
	return nil
}

func (c *Cluster) validateDelete(r DeleteJob) error {
	switch {
	case r.Job == "":
		return errors.New("a job name is needed")
	case c.ShuttingDown:
		return errors.New("the cluster is shutting down")
	}
	return nil
}

// The handlers change the state and answer; they make no durable calls.

func (c *Cluster) assign(_ context.Context, r AssignNodes) (Assigned, error) {
	c.Answered++
	if c.Jobs[r.Job] != nil {
		return Assigned{}, fmt.Errorf("job %s already has nodes", r.Job)
	}
	free := c.free()
	if len(free) < r.Count {
		return Assigned{}, fmt.Errorf("job %s needs %d nodes, %d are free", r.Job, r.Count, len(free))
	}
	nodes := free[:r.Count]
	c.Jobs[r.Job] = nodes
	c.queue(Op{Assign: true, Job: r.Job, Nodes: nodes})
	return Assigned{Job: r.Job, Nodes: nodes}, nil
}

func (c *Cluster) deleteJob(_ context.Context, r DeleteJob) (Deleted, error) {
	c.Answered++
	nodes := c.Jobs[r.Job]
	if nodes == nil {
		return Deleted{}, fmt.Errorf("no job %q", r.Job)
	}
	delete(c.Jobs, r.Job)
	c.queue(Op{Job: r.Job, Nodes: nodes})
	return Deleted{Job: r.Job, Freed: nodes}, nil
}

func (c *Cluster) queue(op Op) {
	op.Seq = c.Ops + len(c.Pending) + 1
	c.Pending = append(c.Pending, op)
}

// Request is one client's request, for run.
type Request struct {
	Delete bool
	Job    string
	Count  int
}

func (r Request) send(ctx context.Context, eng *docket.Engine, id string) (string, error) {
	if r.Delete {
		d, err := docket.Update[Deleted](ctx, eng, id, "delete-job", DeleteJob{Job: r.Job})
		return fmt.Sprintf("deleted %s, freeing %d node(s)", d.Job, len(d.Freed)), err
	}
	a, err := docket.Update[Assigned](ctx, eng, id, "assign-nodes", AssignNodes{Job: r.Job, Count: r.Count})
	return fmt.Sprintf("assigned %d node(s) to %s", len(a.Nodes), a.Job), err
}

// Clients returns what run's clients send: client i assigns 1 + i%3 nodes
// to job-i, and the odd ones then delete their job; client 0 asks for
// job-00 twice, which the handler refuses the second time; the last four
// send requests that the validators refuse.
func Clients(n int) [][]Request {
	var cs [][]Request
	for i := range n {
		job := fmt.Sprintf("job-%02d", i)
		c := []Request{{Job: job, Count: 1 + i%3}}
		switch {
		case i == 0:
			c = append(c, Request{Job: job, Count: 1})
		case i%2 == 1:
			c = append(c, Request{Delete: true, Job: job})
		}
		cs = append(cs, c)
	}
	return append(cs,
		[]Request{{Job: "", Count: 1}},
		[]Request{{Job: "job-big", Count: 1000}},
		[]Request{{Job: "job-none", Count: 0}},
		[]Request{{Delete: true, Job: ""}},
	)
}

func run(ctx context.Context, w io.Writer, dir string) error {
	api := NewClusterAPI()
	g := NewGraph(api, Options{})
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "cluster.db"),
		Graphs: []*docket.Graph{g}, HistoryLimit: 20})
	if err != nil {
		return err
	}
	defer eng.Close()
	const id = "cluster-1"
	h, err := docket.Start[Summary](ctx, eng, g, id, Cluster{Nodes: 32})
	if err != nil {
		return err
	}

	// Sixteen clients at once, each sending its requests in turn.
	var (
		mu                     sync.Mutex
		answers, errs, refused int
		wg                     sync.WaitGroup
		failures               []error
	)
	for _, reqs := range Clients(16) {
		wg.Go(func() {
			for _, r := range reqs {
				_, err := r.send(ctx, eng, id)
				var (
					rej *docket.UpdateRejectedError
					ue  *docket.UpdateError
				)
				mu.Lock()
				switch {
				case errors.As(err, &rej):
					refused++
				case errors.As(err, &ue):
					errs++
					fmt.Fprintln(w, "refused by the handler:", ue.Message)
				case err != nil:
					failures = append(failures, err)
				default:
					answers++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		return errors.Join(failures...)
	}
	fmt.Fprintf(w, "%d updates applied: %d answered, %d with the handler's error; %d refused by the validators\n",
		answers+errs, answers, errs, refused)

	// The answers are in; the cluster catches up when the step next comes
	// round. Watch it happen through the query (which, answered from a
	// replay, may lag a moment behind the answers).
	var st State
	for {
		if st, err = docket.Query[State](ctx, eng, id, "state"); err != nil {
			return err
		}
		if st.Answered == answers+errs && st.Pending == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintf(w, "state: %d jobs, %d nodes free, nothing pending\n", len(st.Jobs), st.Free)

	if err := eng.Signal(ctx, id, "shutdown", "maintenance"); err != nil {
		return err
	}
	s, err := h.Result(ctx)
	if err != nil {
		return err
	}
	var jobs []string
	for _, j := range slices.Sorted(maps.Keys(s.Jobs)) {
		jobs = append(jobs, fmt.Sprintf("%s:%d", j, len(s.Jobs[j])))
	}
	fmt.Fprintf(w, "after shutdown: %s; %d nodes free; %d cluster operations\n", strings.Join(jobs, " "), s.Free, s.Ops)
	if v := api.Violations(); len(v) > 0 {
		return fmt.Errorf("the cluster refused operations: %v", v)
	}
	if !maps.EqualFunc(api.Jobs(), s.Jobs, slices.Equal) {
		return fmt.Errorf("the cluster holds %v, the manager says %v", api.Jobs(), s.Jobs)
	}
	fmt.Fprintln(w, "the cluster agrees, and no node was ever held by two jobs")
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "safemessagehandler")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}
