package docket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docket-run/docket"
)

type (
	Name  string
	Hello string
	Shout string
)

func Example() {
	g := docket.NewGraph("hello", docket.Input[Name]())
	docket.Register1(g, func(_ context.Context, n Name) (Hello, error) {
		return Hello("hello, " + string(n)), nil
	})
	docket.Register1(g, func(_ context.Context, gr Hello) (Shout, error) {
		return Shout(strings.ToUpper(string(gr)) + "!"), nil
	})

	s, err := docket.Execute[Shout](context.Background(), g, Name("ada"))
	fmt.Println(s, err)
	// Output: HELLO, ADA! <nil>
}

func ExamplePlanFor() {
	g := checkout()
	p, err := docket.PlanFor[*Shipment](g, &Order{})
	if err != nil {
		panic(err)
	}
	fmt.Print(p)
	// Output:
	// plan checkout -> *docket_test.Shipment from *docket_test.Order
	//   stage 1: charge, reserve
	//   stage 2: ship
}

func ExampleGraph_Validate() {
	g := docket.NewGraph("broken") // *Order is not declared as an input
	docket.Register1(g, charge)
	fmt.Println(g.Validate())
	// Output:
	// docket: graph "broken" is invalid (1 problem)
	//   - step "charge" needs *docket_test.Order, which no step produces and which is not a declared input; register a step that returns it or declare it with docket.Input[*docket_test.Order]()
}

func ExampleRetry() {
	attempts := 0
	g := docket.NewGraph("flaky", docket.Input[*Order]())
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) {
		attempts++
		if attempts < 3 {
			return nil, errors.New("gateway timeout")
		}
		return &Charge{Amount: 100}, nil
	}, docket.Name("charge"), docket.Retry(docket.RetryPolicy{
		MaxAttempts:     5,
		InitialInterval: time.Millisecond,
	}))

	c, err := docket.Execute[*Charge](context.Background(), g, &Order{ID: "o-1"})
	fmt.Println(c.Amount, attempts, err)
	// Output: 100 3 <nil>
}

func ExampleStepError() {
	g := docket.NewGraph("declined", docket.Input[*Order]())
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) {
		return nil, errors.New("card declined")
	}, docket.Name("charge"), docket.Retry(docket.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond}))

	_, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	var se *docket.StepError
	if errors.As(err, &se) {
		fmt.Println(se.Step, se.Attempts, se.Err)
	}
	// Output: charge 2 card declined
}

func ExampleRace() {
	g := docket.NewGraph("quote", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		select { // a slow provider that gives up when it loses
		case <-time.After(time.Second):
			return &Charge{Amount: 1}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, docket.Name("slow"), docket.Race())
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) {
		return &Charge{Amount: 2}, nil
	}, docket.Name("fast"), docket.Race())

	c, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	fmt.Println(c.Amount, err)
	// Output: 2 <nil>
}

func ExampleMap() {
	type Words []string
	type Length int
	type Total int
	g := docket.NewGraph("lengths", docket.Input[Words]())
	docket.Register1(g, func(_ context.Context, w Words) ([]string, error) { return w, nil }, docket.Name("split"))
	docket.Map(g, func(_ context.Context, w string) (Length, error) { return Length(len(w)), nil },
		docket.Name("measure"), docket.Concurrency(4))
	docket.Register1(g, func(_ context.Context, ls []Length) (Total, error) {
		var t Total
		for _, l := range ls {
			t += Total(l)
		}
		return t, nil
	}, docket.Name("sum"))

	t, err := docket.Execute[Total](context.Background(), g, Words{"typed", "execution", "graphs"})
	fmt.Println(t, err)
	// Output: 20 <nil>
}

func ExampleExecuteBatch() {
	g := docket.NewGraph("square", docket.Input[int]())
	docket.Register1(g, func(_ context.Context, n int) (string, error) {
		if n < 0 {
			return "", errors.New("negative")
		}
		return fmt.Sprint(n * n), nil
	}, docket.Name("square"))

	out, err := docket.ExecuteBatch[string](context.Background(), g, []int{1, 2, -3, 4}, docket.Concurrency(2))
	fmt.Printf("%q\n", out)
	var be *docket.BatchError
	if errors.As(err, &be) {
		fmt.Println(be.Errs[2] != nil, len(be.Unwrap()))
	}
	// Output:
	// ["1" "4" "" "16"]
	// true 1
}

// A step races a lookup against a deadline: whichever future ends first
// wins and the other is cancelled. The same code runs durably, where the
// timer is a durable one and the choice is journaled.
func ExampleAwaitFirst() {
	type Query string
	type Answer string
	g := docket.NewGraph("lookup", docket.Input[Query]())
	docket.Register1(g, func(ctx context.Context, q Query) (Answer, error) {
		lookup := docket.Go(ctx, "lookup", func(ctx context.Context) (string, error) {
			return "answer to " + string(q), nil
		})
		deadline := docket.Go(ctx, "deadline", func(ctx context.Context) (string, error) {
			select {
			case <-time.After(time.Hour):
				return "too late", nil
			case <-ctx.Done():
				return "", ctx.Err() // cancelled: the lookup won
			}
		})
		i, v, err := docket.AwaitFirst(ctx, lookup, deadline)
		return Answer(fmt.Sprint(i, " ", v)), err
	}, docket.Name("ask"))
	a, err := docket.Execute[Answer](context.Background(), g, Query("life"))
	fmt.Println(a, err)
	// Output: 0 answer to life <nil>
}

// A Selector waits for the first of several futures and runs its case.
func ExampleSelector() {
	type Job string
	type Report string
	g := docket.NewGraph("watch", docket.Input[Job]())
	docket.Register1(g, func(ctx context.Context, j Job) (Report, error) {
		work := docket.Go(ctx, "work", func(ctx context.Context) (int, error) { return len(j), nil })
		timer := docket.NewTimer(ctx, time.Hour)
		var r Report
		sel := docket.NewSelector()
		docket.AddFuture(sel, work, func(n int, err error) { r = Report(fmt.Sprintf("done: %d", n)) })
		docket.AddFuture(sel, timer, func(time.Time, error) { r = "still running after an hour" })
		if err := sel.Select(ctx); err != nil {
			return "", err
		}
		timer.Cancel()
		return r, nil
	}, docket.Name("watch"))
	r, err := docket.Execute[Report](context.Background(), g, Job("resize"))
	fmt.Println(r, err)
	// Output: done: 6 <nil>
}
