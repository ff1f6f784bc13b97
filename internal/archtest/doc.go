// Package archtest holds the test that keeps docs/ARCHITECTURE.md's package table true: every
// import between the module's top-level folders must be listed there, and every edge listed
// must be one the code has. It has no code of its own.
package archtest
