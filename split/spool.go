package split

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
)

// MemoryLimit is the most body bytes kept in memory; a larger body goes to
// a temporary file, so that concurrent splits of large messages do not
// grow the daemon.
const MemoryLimit = 1 << 20

// Spool holds the body of one message while it is split: in memory up to
// MemoryLimit, in a temporary file in dir beyond. It hashes what it holds
// for Digest. It is not safe for concurrent use.
type Spool struct {
	dir  string
	mem  bytes.Buffer
	file *os.File
	size int64
	sum  hash.Hash
}

// NewSpool returns an empty spool whose file, if needed, goes in dir.
func NewSpool(dir string) *Spool {
	return &Spool{dir: dir, sum: sha256.New()}
}

// Write appends body bytes.
func (s *Spool) Write(p []byte) (int, error) {
	s.sum.Write(p)
	s.size += int64(len(p))
	if s.file == nil && s.mem.Len()+len(p) <= MemoryLimit {
		return s.mem.Write(p)
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "body-*.tmp")
		if err != nil {
			return 0, fmt.Errorf("split: spool the body: %w", err)
		}
		// Removed at once: the open file stays readable and nothing is
		// left behind if the daemon dies.
		os.Remove(f.Name())
		s.file = f
		if _, err := s.file.Write(s.mem.Bytes()); err != nil {
			return 0, fmt.Errorf("split: spool the body: %w", err)
		}
		s.mem = bytes.Buffer{}
	}
	if _, err := s.file.Write(p); err != nil {
		return 0, fmt.Errorf("split: spool the body: %w", err)
	}
	return len(p), nil
}

// Size is the number of body bytes written.
func (s *Spool) Size() int64 { return s.size }

// InFile reports whether the body went to a temporary file.
func (s *Spool) InFile() bool { return s.file != nil }

// Reader returns a new reader of the whole body; several may be used one
// after the other (one per copy).
func (s *Spool) Reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	return bytes.NewReader(s.mem.Bytes())
}

// BodySum is the SHA-256 of the body written so far.
func (s *Spool) BodySum() []byte { return s.sum.Sum(nil) }

// Close frees the memory and the file.
func (s *Spool) Close() error {
	s.mem = bytes.Buffer{}
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	return err
}
