package sqlite

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/docket-run/docket/store"
)

// openKind tells why SQLite could not open the database file for writing.
// SQLite reports a file it cannot create or open read-write as
// SQLITE_CANTOPEN, which also covers a missing directory or a bad path; when
// the file or its directory exists but refuses writes, that is
// store.ErrReadOnly.
func (s *Store) openKind(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_CANTOPEN {
		return nil
	}
	file := s.file()
	if file == "" {
		return nil
	}
	f, ferr := os.OpenFile(file, os.O_RDWR, 0)
	if ferr == nil {
		f.Close()
		return nil
	}
	if !errors.Is(ferr, fs.ErrNotExist) {
		return readOnly(ferr)
	}
	// The file does not exist: can its directory take it?
	dir := filepath.Dir(file)
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	probe, perr := os.CreateTemp(dir, ".docket-probe-*")
	if perr != nil {
		return readOnly(perr)
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

// readOnly returns store.ErrReadOnly if err says that writing is not allowed.
func readOnly(err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return store.ErrReadOnly
	}
	return nil
}

// file returns the file name of the database, without "file:" and parameters.
func (s *Store) file() string {
	name := s.path
	if strings.HasPrefix(name, "file:") {
		name, _, _ = strings.Cut(strings.TrimPrefix(name, "file:"), "?")
		name, _, _ = strings.Cut(name, "#")
		if n, err := url.PathUnescape(name); err == nil {
			name = n
		}
		if strings.HasPrefix(name, "//") { // file://host/path
			i := strings.IndexByte(name[2:], '/')
			if i < 0 {
				return ""
			}
			name = name[2+i:]
		}
	}
	return name
}
