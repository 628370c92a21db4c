package doctor

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// checkVersion compares the running daemon's version (from its build
// info metric) with this command's: after an upgrade that did not restart
// the service, the old code keeps running.
func checkVersion(e *env) []Result {
	r := Result{Check: "version"}
	if e.cfg.MetricsListen == "" {
		r.Message = fmt.Sprintf("this is %s; the running daemon's version is not known (metrics_listen is off).", e.opts.Version)
		return []Result{r}
	}
	running, err := runningVersion(e.ctx, e.cfg.MetricsListen, e.opts.Timeout)
	switch {
	case err != nil:
		r.Status = Warn
		r.Message = fmt.Sprintf("cannot read the running daemon's version from http://%s/metrics: %v.", e.cfg.MetricsListen, err)
		r.Fix = "check that bccguard runs with this config (metrics_listen " + e.cfg.MetricsListen + ")."
	case e.opts.Version != "" && running != e.opts.Version:
		r.Status = Warn
		r.Message = fmt.Sprintf("%s runs, but this is %s.", running, e.opts.Version)
		r.Fix = "systemctl restart bccguard, so that the installed version runs."
	default:
		r.Message = running + " runs."
	}
	return []Result{r}
}

// runningVersion reads the version label of bccguard_build_info.
func runningVersion(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "bccguard_build_info{")
		if !ok {
			continue
		}
		if v, found := labels(rest)["version"]; found {
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no bccguard_build_info: is it bccguard?")
}

// labels reads the label pairs of one sample line (name="value", ...}),
// unescaped: the text format escapes values like Go strings.
func labels(s string) map[string]string {
	m := map[string]string{}
	for {
		name, rest, ok := strings.Cut(s, `="`)
		end := closingQuote(rest)
		if !ok || end < 0 {
			return m
		}
		if v, err := strconv.Unquote(`"` + rest[:end] + `"`); err == nil {
			m[strings.TrimLeft(name, ", ")] = v
		}
		s = rest[end+1:]
	}
}

// closingQuote returns the index of the first unescaped quote in s.
func closingQuote(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
