// Command etcd is etcd's own entry point, built at the version k8s.io/kubernetes v1.34.4 requires
// (go.etcd.io/etcd/server/v3 v3.6.4). The upstream main package is named after its folder ("server");
// this wrapper gives the binary its usual name.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
