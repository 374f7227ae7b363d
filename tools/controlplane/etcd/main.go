// Command etcd is a minimal wrapper around upstream etcd's server main, built from the
// go.etcd.io/etcd/server/v3 module for Sundial's local test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
