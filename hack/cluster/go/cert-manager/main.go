// Command cert-manager-controller runs cert-manager's own controllers (the
// real code from github.com/cert-manager/cert-manager/pkg/controller/...) as
// a host process for the local test control plane in hack/cluster.
//
// cert-manager's official controller binary lives in a nested Go module
// (cmd/controller) that the Go module proxy does not serve, so this small
// main wires the public controller packages together instead: it builds the
// shared controller context, constructs every selected registered
// controller, starts the informer factories and runs the controllers until
// SIGINT/SIGTERM. No signing logic lives here.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Controllers: each package registers itself with controller.Register.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// Issuer implementations used by the issuers/clusterissuers controllers.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := pflag.NewFlagSet("cert-manager-controller", pflag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "path to a kubeconfig")
	master := fs.String("master", "", "API server URL (overrides the kubeconfig)")
	namespace := fs.String("namespace", "", "only watch this namespace (empty: all)")
	clusterNS := fs.String("cluster-resource-namespace", "cert-manager", "namespace holding the secrets of ClusterIssuers")
	enabled := fs.StringSlice("controllers", nil, "controllers to run (default: all compiled in)")
	workers := fs.Int("workers", 5, "workers per controller")
	ownerRef := fs.Bool("enable-certificate-owner-ref", false, "set the Certificate as owner of its Secret")
	qps := fs.Float32("kube-api-qps", 50, "client QPS when API priority and fairness is off")
	burst := fs.Int("kube-api-burst", 100, "client burst when API priority and fairness is off")
	minBackoff := fs.Duration("certificate-request-minimum-backoff-duration", time.Second, "first back-off after a failed issuance")
	maxBackoff := fs.Duration("certificate-request-maximum-backoff-duration", 30*time.Second, "largest back-off after failed issuances")
	healthz := fs.String("healthz-listen-address", "127.0.0.1:9403", "address of /healthz and /readyz (empty: off)")
	logCfg := logsapi.NewLoggingConfiguration()
	logf.AddFlags(logCfg, fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	logf.InitLogs()
	defer logf.FlushLogs()
	if err := logf.ValidateAndApply(logCfg); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	log := logf.FromContext(ctx)

	opts := controller.ContextOptions{
		APIServerHost:      *master,
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   *qps,
		KubernetesAPIBurst: *burst,
		Namespace:          *namespace,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: *clusterNS},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           *ownerRef,
			CertificateRequestMinimumBackoffDuration: *minBackoff,
			CertificateRequestMaximumBackoffDuration: *maxBackoff,
		},
	}
	factory, err := controller.NewContextFactory(ctx, opts)
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}
	shared, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}

	known := controller.Known()
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(*enabled) > 0 {
		want := map[string]bool{}
		for _, n := range *enabled {
			if _, ok := known[n]; !ok {
				return fmt.Errorf("unknown controller %q (known: %s)", n, strings.Join(names, ","))
			}
			want[n] = true
		}
		kept := names[:0]
		for _, n := range names {
			if want[n] {
				kept = append(kept, n)
			}
		}
		names = kept
	}

	// Construct every controller first: constructors register their
	// informers with the shared factories, which are started afterwards.
	ifaces := make(map[string]controller.Interface, len(names))
	for _, n := range names {
		if *namespace != "" && n == "clusterissuers" {
			continue
		}
		c, err := known[n](factory)
		if err != nil {
			return fmt.Errorf("constructing controller %s: %w", n, err)
		}
		ifaces[n] = c
	}

	var ready atomic.Bool
	if *healthz != "" {
		ln, err := net.Listen("tcp", *healthz)
		if err != nil {
			return fmt.Errorf("healthz listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !ready.Load() {
				http.Error(w, "informers not started", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(ifaces))
	for n, c := range ifaces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("starting controller", "controller", n)
			if err := c.Run(*workers, ctx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", n, err)
			}
		}()
	}

	shared.SharedInformerFactory.Start(ctx.Done())
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	ready.Store(true)
	log.Info("cert-manager controllers running", "controllers", names, "clusterResourceNamespace", *clusterNS)

	select {
	case <-ctx.Done():
	case err := <-errs:
		stop()
		wg.Wait()
		return err
	}
	wg.Wait()
	return nil
}
