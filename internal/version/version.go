// Package version reports the version of Docket built into the running
// binary, from the module information the Go toolchain records.
package version

import "runtime/debug"

// Module is Docket's module path.
const Module = "github.com/docket-run/docket"

// String returns Docket's module version ("v0.3.1"), "(devel)" for a build
// from a source tree, or "unknown" when the binary carries no build
// information.
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == Module {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == Module {
			return d.Version
		}
	}
	return "(devel)"
}
