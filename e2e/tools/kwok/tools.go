//go:build tools

// Package tools pins kwok (a fake node serving the kubelet API) for the end-to-end tests; it is
// never imported.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
