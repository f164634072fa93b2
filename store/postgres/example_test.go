package postgres_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/docket-run/docket/store/postgres"
)

// A minute's figures of a busy store's group commit: how large the groups
// were, how long a commit waited for a leader, and how busy the leaders
// were. (It needs a server, so it is compiled but not run.)
func ExampleStore_Stats() {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://docket@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	before, t0 := s.Stats(), time.Now()
	time.Sleep(time.Minute) // the engine commits meanwhile
	d, elapsed := s.Stats().Sub(before), time.Since(t0)
	if d.Groups > 0 {
		fmt.Printf("%.1f commits per group, %v queued each, leaders %.0f%% busy\n",
			float64(d.Updates)/float64(d.Groups), d.Waiting/time.Duration(d.Updates),
			100*d.Running.Seconds()/(elapsed.Seconds()*float64(d.Leaders)))
	}
}
