package docket

import (
	"context"
	"fmt"
	"reflect"
)

// compensation is a step's registered compensation, typed by generics.
type compensation struct {
	in   reflect.Type
	call func(ctx context.Context, out any) error
}

// Compensate declares how to undo a step: if the execution fails (or is
// cancelled) after the step completed, fn is called with the step's output.
// Compensations run one at a time, in reverse order of completion, each
// under the step's retry policy. In durable mode they are recorded and
// survive crashes; their outcomes appear in Describe. Out must be the
// step's output type; Validate reports a mismatch.
func Compensate[Out any](fn func(ctx context.Context, out Out) error) StepOption {
	c := &compensation{
		in: reflect.TypeFor[Out](),
		call: func(ctx context.Context, out any) error {
			v, _ := out.(Out)
			return fn(ctx, v)
		},
	}
	return stepFunc(func(s *stepConfig) { s.compensate = c })
}

// CompensationError reports a compensation that failed for good.
type CompensationError struct {
	Step string
	Err  error
}

func (e *CompensationError) Error() string {
	return fmt.Sprintf("docket: compensation of step %q failed: %v", e.Step, e.Err)
}

func (e *CompensationError) Unwrap() error { return e.Err }

// compensateOnce makes one attempt of a compensation, with panics caught.
func compensateOnce(ctx context.Context, c *compensation, out any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p}
		}
	}()
	return c.call(ctx, out)
}
