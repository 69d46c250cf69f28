//go:build tools

// Package tools pins Dex for the end-to-end tests; it is never imported.
package tools

import _ "github.com/dexidp/dex/cmd/dex"
