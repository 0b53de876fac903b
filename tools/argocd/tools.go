//go:build tools

// Package argocd pins the Argo CD binary of kflowgen's end-to-end tests; see README.md.
package argocd

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
