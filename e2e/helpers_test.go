package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func writeFileErr(path, body string) error { return os.WriteFile(path, []byte(body), 0o644) }

func renameErr(from, to string) error { return os.Rename(from, to) }

// rssKiB returns the peak resident memory (VmHWM) of a process.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
