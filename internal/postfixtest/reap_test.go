package postfixtest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const orphanHelperEnv = "POSTFIXTEST_ORPHAN_HELPER"

// TestOrphanHelper is not a test of its own: TestReapsOrphanedInstance runs
// it in a subprocess that it then kills. It returns rather than skips when
// not in that role, since CI counts skipped tests as failures.
func TestOrphanHelper(t *testing.T) {
	if os.Getenv(orphanHelperEnv) == "" {
		return
	}
	inst := Start(t, Options{RelayTo: "127.0.0.1:1"})
	fmt.Printf("orphan %s %d\n", inst.Dir(), masterPID(inst.queueDir))
	time.Sleep(time.Hour) // Killed by the parent long before this ends.
}

// A test process that dies without running its cleanups (go test -timeout,
// ^C) leaves a running instance and its alternate_config_directories entry
// behind; the next Start must stop and remove them.
func TestReapsOrphanedInstance(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanHelper$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), orphanHelperEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	var pid int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "orphan %s %d", &dir, &pid); err == nil {
			break
		}
	}
	if dir == "" || pid == 0 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not report its instance (scan error %v)", sc.Err())
	}
	// Checked while the helper lives, so that no concurrent Start in another
	// test process can have reaped the instance yet.
	sys, err := lookupSystem()
	if err != nil {
		t.Fatal(err)
	}
	if !processAlive(pid) || !slices.Contains(registeredDirs(t, sys), dir) {
		t.Errorf("helper's instance not set up: master alive=%v, registered dirs %v", processAlive(pid), registeredDirs(t, sys))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	Start(t, Options{RelayTo: "127.0.0.1:1"})

	if groupAlive(pid) {
		t.Errorf("orphaned master %d (or its children) still running", pid)
		_ = stopInstance(sys, dir, filepath.Join(filepath.Dir(dir), "queue"))
	}
	if slices.Contains(registeredDirs(t, sys), dir) {
		t.Errorf("orphaned %s still in %s", dir, altDirsParam)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("orphaned %s not removed (stat: %v)", dir, err)
	}
}

func registeredDirs(t *testing.T, sys system) []string {
	t.Helper()
	out, err := run(sys.postconf, "-c", sys.defaultConfDir, "-h", altDirsParam)
	if err != nil {
		t.Fatal(err)
	}
	return strings.FieldsFunc(out, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}
