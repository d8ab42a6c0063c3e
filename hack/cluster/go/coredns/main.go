// Command coredns is CoreDNS (github.com/coredns/coredns, the version go.mod pins) with only the
// plugins the plane's cluster DNS uses: kubernetes (Services, EndpointSlices and pod names of the
// zone cluster.local, from the API server), bind, ready and errors. It is CoreDNS's own main
// (coremain.Run); the plugins compiled in are the ones imported below, where CoreDNS's root
// package imports all of them (core/plugin). None of them forwards a query anywhere: no forward,
// grpc, etcd, cloud or cache plugin is in the binary (`coredns -plugins` lists what is).
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
