//go:build !race

package vring_test

const raceEnabled = false
