//go:build tools

// Package tools pins helm (the chart linter and renderer, and the deploy tool of the CI/CD
// guides) for the chart tests and the CI/CD proof; it is never imported.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
