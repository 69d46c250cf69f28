// Command kubectl is kubectl built from its library module (k8s.io/kubectl, pinned in go.mod),
// for machines that have no versioned kubectl binary. scripts/testenv-build builds it only when
// scripts/cluster asks for it.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	// RunNoErrOutput leaves printing the error to CheckErr, which formats API errors the way
	// kubectl users (and the e2e tests) expect, e.g. "error: You must be logged in to the server".
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
