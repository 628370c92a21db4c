package split

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StoreFile is the name of the records database in the state directory.
const StoreFile = "split.db"

var bucket = []byte("handed_over")

// Store is the durable record of copies handed over, one entry per
// (message digest, recipient). It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// ErrCorrupt marks records bbolt could not read: it panics on damaged
// pages (a bad freelist already in Open), and a panic is turned into this
// error so that a damaged file never takes the daemon down.
var ErrCorrupt = errors.New("split: records damaged")

// guard turns a bbolt panic into ErrCorrupt in *err.
func guard(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %v", ErrCorrupt, r)
	}
}

// OpenStore opens (or creates) the records in dir and reads every page,
// so that damage is found at startup, not in the middle of a split. Only
// one process may have them open: a second one waits up to 5 seconds and
// then fails. After a failure, do not open the same file again in this
// process: a panic inside bbolt's Open leaves its file lock held.
func OpenStore(dir string) (s *Store, err error) {
	path := filepath.Join(dir, StoreFile)
	defer func() {
		if err != nil {
			err = fmt.Errorf("split: open records %s: %w", path, err)
		}
	}()
	var db *bolt.DB
	defer func() {
		if err != nil && db != nil {
			db.Close()
		}
	}()
	defer guard(&err)
	if db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second}); err != nil {
		return nil, err
	}
	if err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, err
	}
	if err = db.View(func(tx *bolt.Tx) error {
		// Walk every record once (every branch and leaf page). bbolt's
		// own Tx.Check panics in a goroutine of its own, where no
		// recover can reach: not usable here.
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error { return nil })
	}); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// key is the digest, then the recipient's key (policy.RecipientKey, as
// the caller gives it): one message's entries are neighbours, found with
// one seek.
func key(d Digest, rcpt string) []byte {
	k := make([]byte, 0, len(d)+len(rcpt))
	k = append(k, d[:]...)
	return append(k, rcpt...)
}

// HandedOver returns the recipients (their keys, as recorded) of the message d whose
// copies were handed over before, within the retention.
func (s *Store) HandedOver(d Digest) (_ map[string]bool, err error) {
	defer guard(&err)
	out := map[string]bool{}
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(d[:]); k != nil && bytes.HasPrefix(k, d[:]); k, _ = c.Next() {
			out[string(k[len(d):])] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("split: read records: %w", err)
	}
	return out, nil
}

// Record notes that the copy of message d for the recipient whose key
// (policy.RecipientKey) is rcpt was handed over; it returns
// once the record is on disk.
func (s *Store) Record(d Digest, rcpt, queueID string, at time.Time) (err error) {
	defer guard(&err)
	v := binary.BigEndian.AppendUint64(nil, uint64(at.Unix()))
	v = append(v, queueID...)
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put(key(d, rcpt), v)
	})
	if err != nil {
		return fmt.Errorf("split: write record: %w", err)
	}
	return nil
}

// Prune deletes records made before cutoff and returns how many.
func (s *Store) Prune(before time.Time) (n int, err error) {
	defer guard(&err)
	cutoff := before.Unix()
	err = s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil; {
			if len(v) < 8 || int64(binary.BigEndian.Uint64(v)) < cutoff {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
				// Delete moves the cursor to the next entry.
				k, v = c.Seek(k)
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("split: prune records: %w", err)
	}
	return n, nil
}

// Count returns the number of records, for tests and logs.
func (s *Store) Count() int {
	n := 0
	s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	return n
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
