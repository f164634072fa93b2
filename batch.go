package docket

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
)

// mapper is the typed machinery of a Map step, built by Map's generics.
type mapper struct {
	length func(in any) int
	alloc  func(n int) any
	call   func(ctx context.Context, in, out any, i int) error
}

// Map registers a fan-out step: it takes a []A (made by another step or
// given as input), calls fn on every element concurrently (bounded by a
// Concurrency option), and produces the []B of the results in the same order.
// A step that takes []B is the fan-in. Each element is retried on its own
// under the step's retry policy; the first element that fails for good
// cancels the others and fails the step with an *ItemError.
func Map[A, B any](g *Graph, fn func(context.Context, A) (B, error), opts ...StepOption) {
	m := &mapper{
		length: func(in any) int { s, _ := in.([]A); return len(s) },
		alloc:  func(n int) any { return make([]B, n) },
		call: func(ctx context.Context, in, out any, i int) error {
			b, err := fn(ctx, in.([]A)[i])
			if err == nil {
				out.([]B)[i] = b
			}
			return err
		},
	}
	addTyped(g, fn, reflect.TypeFor[[]B](), []reflect.Type{reflect.TypeFor[[]A]()}, nil, opts)
	g.mu.Lock()
	g.steps[len(g.steps)-1].mapper = m
	g.mu.Unlock()
}

// runMap runs every item of a Map step under the step's policy.
func (r *run) runMap(f *frame) (any, error) {
	m := f.ps.st.mapper
	in := r.vals[f.ps.in[0]]
	n := m.length(in)
	out := m.alloc(n)
	if n == 0 {
		return out, nil
	}
	limit := f.ps.st.cfg.concurrency
	if limit <= 0 || limit > n {
		limit = n
	}
	ctx, cancel := context.WithCancel(f)
	defer cancel()

	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  atomic.Int64 // the next item to take
		// Each item gets a frame of its own, so Logger and the
		// observer see its index and attempt.
		items = make([]frame, n)
		done  = ctx.Done()
	)
	// Workers take items by index, with no channel hand-off; the closure is
	// made once, so starting a worker allocates nothing more.
	work := func() {
		normal := false
		defer func() {
			if !normal {
				once.Do(func() { first = ErrGoexit; cancel() })
			}
			wg.Done()
		}()
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				break
			}
			select {
			case <-done:
				normal = true
				return
			default:
			}
			item := &items[i]
			item.Context, item.r, item.ps, item.isItem, item.item, item.d = ctx, r, f.ps, true, i, f.d
			if err := r.runItem(item, m, in, out); err != nil {
				once.Do(func() { first = &ItemError{Index: i, Err: err}; cancel() })
			}
		}
		normal = true
	}
	wg.Add(limit)
	for range limit {
		go work()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return out, first
}

func (r *run) runItem(f *frame, m *mapper, in, out any) error {
	call := func(ctx context.Context, _ []any, _ []int32) (any, error) {
		return nil, m.call(ctx, in, out, f.item)
	}
	for attempt := 1; ; attempt++ {
		f.attempt = attempt
		_, err := r.attempt(f, call, nil, nil)
		if err == nil {
			return nil
		}
		if !r.retryWait(f, f.retryPolicy(), attempt, err) {
			return err
		}
	}
}

// ExecuteBatch runs one execution of g per item, each producing an Out from
// that item plus any shared inputs given With(...), at most Concurrency(n)
// at a time (all at once by default). Results are in item order. If items
// fail, the results of the others are still returned, with a *BatchError
// holding one error per item (nil where the item succeeded). An Abort error
// in any item stops the whole batch.
func ExecuteBatch[Out, In any](ctx context.Context, g *Graph, items []In, opts ...ExecuteOption) ([]Out, error) {
	var cfg execConfig
	for _, o := range opts {
		o.applyExecute(&cfg)
	}
	results := make([]Out, len(items))
	errs := make([]error, len(items))
	limit := cfg.concurrency
	if limit <= 0 || limit > len(items) {
		limit = len(items)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	target := reflect.TypeFor[Out]()
	itemCfg := cfg
	itemCfg.id = ""
	var wg sync.WaitGroup
	next := make(chan int)
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				v, err := execute(ctx, g, target, []any{items[i]}, &itemCfg)
				if err != nil {
					errs[i] = err
					if IsAbort(err) {
						cancel(err)
					}
					continue
				}
				results[i], _ = v.(Out)
			}
		}()
	}
feed:
	for i := range items {
		select {
		case next <- i:
		case <-ctx.Done():
			stopped := fmt.Errorf("docket: batch stopped before this item ran: %w", context.Cause(ctx))
			for j := i; j < len(items); j++ {
				errs[j] = stopped
			}
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return results, &BatchError{Errs: errs}
		}
	}
	return results, nil
}
