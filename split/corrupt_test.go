package split

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDamagedRecordsAreErrorsNotPanics damages each page of a records file
// in turn (16 bytes, as a bad sector or a torn write would) and checks
// that opening and using it gives errors: bbolt panics on damaged pages,
// and a panic in the daemon would crash it on every split.
func TestDamagedRecordsAreErrorsNotPanics(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 3000 {
		if err := s.Record(Digest{byte(i), byte(i >> 8)}, fmt.Sprintf("r%d@x.example", i), "QID", now.Add(-time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	good, err := os.ReadFile(filepath.Join(dir, StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	pages := len(good) / page
	if pages < 10 {
		t.Fatalf("only %d pages", pages)
	}
	refused := 0
	for p := 0; p < pages; p++ {
		bad := bytes.Clone(good)
		copy(bad[p*page+8:], bytes.Repeat([]byte{0xa5}, 16))
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, StoreFile), bad, 0o600); err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("page %d damaged: panic escaped: %v", p, r)
				}
			}()
			s, err := OpenStore(d)
			if err != nil {
				refused++
				return
			}
			defer s.Close()
			// Opened: the damage was where the check cannot see it (an
			// unused page); using the records must still not panic.
			s.HandedOver(Digest{7})
			s.Record(Digest{9}, "new@x.example", "QID", now)
			s.Prune(now.Add(-time.Hour))
		}()
	}
	if refused == 0 {
		t.Errorf("no damaged file of %d was refused at open", pages)
	}
	t.Logf("%d of %d damaged files refused at open", refused, pages)
}

// TestGuardTurnsPanicIntoErrCorrupt: what the methods rely on.
func TestGuardTurnsPanicIntoErrCorrupt(t *testing.T) {
	f := func() (err error) {
		defer guard(&err)
		panic("invalid freelist page")
	}
	if err := f(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
}
