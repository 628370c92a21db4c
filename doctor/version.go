package doctor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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
	return buildInfoVersion(resp.Body)
}

// buildInfoVersion reads the version label of bccguard_build_info from a
// metrics page in the Prometheus text format.
func buildInfoVersion(r io.Reader) (string, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return "", err
	}
	if mf := families["bccguard_build_info"]; mf != nil {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "version" {
					return l.GetValue(), nil
				}
			}
		}
	}
	return "", fmt.Errorf("no bccguard_build_info: is it bccguard?")
}
