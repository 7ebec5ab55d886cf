//go:build race

package vring_test

const raceEnabled = true
